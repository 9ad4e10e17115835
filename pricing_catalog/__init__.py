"""The versioned, effective-dated pricing catalog: price data in data/, the strict loader and matching here."""
