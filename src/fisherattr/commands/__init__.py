"""Sub-commands of the ``fisherattr`` command line, one module each."""
