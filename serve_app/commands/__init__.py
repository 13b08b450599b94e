"""Command-line commands that use a running service through ``serve_app.client``."""

from serve_app.commands.remote import COMMANDS, add_commands, run_command

__all__ = ["COMMANDS", "add_commands", "run_command"]
