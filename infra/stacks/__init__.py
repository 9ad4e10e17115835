"""Stacks: compose the constructs of ``infra.constructs``, grant access between them and emit outputs."""
