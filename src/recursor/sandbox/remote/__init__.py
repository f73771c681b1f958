"""Environments whose worker runs elsewhere (a container, a vendor's sandbox), same protocol."""
