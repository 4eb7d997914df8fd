"""Files that ``state_extension initialize`` deploys into a Meltano project."""
