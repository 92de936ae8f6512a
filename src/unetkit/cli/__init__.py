"""The command line: parsing and presenting only; nothing imports it."""
