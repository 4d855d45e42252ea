"""Partner flows the hub runs itself: payments and receipts, citizen lookups, postal tracking."""
