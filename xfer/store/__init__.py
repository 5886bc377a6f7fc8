"""The trial store: what a trial is (identity), where it lives (files), who runs it (locks), where it stands (state)."""
