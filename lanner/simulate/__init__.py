"""``lanner simulate``: perform safe, real versions of suspicious behaviour and check the agent caught it."""
