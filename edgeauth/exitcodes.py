"""The exit statuses of every edgeauth command, named once.

Values follow sysexits(3) where one fits, so init systems and scripts can tell a bad
configuration (78) from a service that is not there (69). Pure: imports nothing.
"""

EX_REFUSED = 1  # the command ran and was refused: a conflict, an unknown name, an API error
EX_USAGE = 2  # the command line is wrong (argparse's own status)
EX_UNAVAILABLE = 69  # a service the command needs cannot be reached: store, admin API, workers
EX_CONFIG = 78  # the configuration is missing or invalid
