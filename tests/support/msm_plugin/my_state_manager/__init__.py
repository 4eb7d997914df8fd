"""The documented custom state backend example (msm://), backed by a real SQLite file."""
