"""The commands layer: one module per command (group), each ``run(args) -> exit status``.

A command turns parsed arguments into calls of the domain packages' plain functions, prints what the user reads and
maps the ground floor's errors to messages; ``modelmeter.cli`` loads only the module of the command it runs, so
``modelmeter report`` never pays for importing the gateway or Great Expectations.
"""
