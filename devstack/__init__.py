"""The local stack: installs, starts, supervises and health-checks every component on
one machine (``make up`` / ``make down`` / ``make run``)."""
