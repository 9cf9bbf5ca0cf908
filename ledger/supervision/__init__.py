"""Fund supervision: real-time audit rules on every settlement, stored flags, the daily export."""
