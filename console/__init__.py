"""zgoda console."""
