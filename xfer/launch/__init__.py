"""Launching: compose, check, plan, and place trials here (local) or on SLURM."""
