"""zgoda installer."""
