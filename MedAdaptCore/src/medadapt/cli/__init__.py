"""The ``medadapt`` command line: parser, sub-commands, batch prediction, demo and progress bars."""
