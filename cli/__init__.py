"""The ``likes`` command, the top layer: parses arguments and calls the layers below."""
