"""The synthetic fleet world and one fake server per vendor."""
