"""Dossier rules: the status machine, working-hour deadlines and the domain validators."""
