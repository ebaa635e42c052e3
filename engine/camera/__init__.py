"""The camera language: the grammar that reads a shot description, and the timed camera path."""
