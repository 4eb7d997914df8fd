"""The command line, split by concern; `state_ext.main` assembles it."""
