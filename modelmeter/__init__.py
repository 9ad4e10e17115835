"""modelmeter: a multi-tenant foundation-model gateway and the pipeline that turns its usage into chargeback."""

__version__ = "0.1.0"
