"""zgoda agent."""
