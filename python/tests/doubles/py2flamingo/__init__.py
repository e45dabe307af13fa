"""Test double of the lab GUI's package (see ../README.md)."""
