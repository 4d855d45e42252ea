"""Developer tools: demo, benchmark, sink, walkthrough and partner simulators.

Product code never imports this package (an import-linter contract); only the CLI loads it, for its developer commands.
"""
