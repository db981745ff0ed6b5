"""zgoda relay."""
