"""Adapters: concrete implementations of the ports, one subpackage per port."""
