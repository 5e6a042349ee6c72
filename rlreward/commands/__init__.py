"""The ``rlreward`` command line: :mod:`rlreward.commands.main` dispatches to one module per command."""
