"""Self-contained HTML reports about a selection (`mona report`)."""
