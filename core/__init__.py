"""The bottom layer: settings and the records every other layer shares. Imports nothing
of the project."""
