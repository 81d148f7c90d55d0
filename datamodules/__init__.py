"""corrmae data modules and readers."""
