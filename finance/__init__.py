"""The month-end close (DESIGN.md "Finance"): the AWS bill (CUR 2.0) imported, reconciled with metered usage,
shared costs allocated by rules, and the chargeback of record that adds up to the invoice to the cent.

- :mod:`finance.cur` — CUR 2.0 files → immutable snapshots per billing period;
- :mod:`finance.usage_types` — the reviewed map from a line's usage type to model, dimension, tier, kind;
- :mod:`finance.reconcile` — every billed dollar in exactly one category, beside what the gateway metered;
- :mod:`finance.allocation` — the allocation rules (YAML) and what they claim;
- :mod:`finance.chargeback` — the chargeback of record, cents by largest remainder, versioned.
"""
