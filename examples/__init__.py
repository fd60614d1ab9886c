"""Example user networks for the "Your own network" routes of the README (importable as `examples.<module>:<fn>`)."""
