"""Credits: the pricing table, the ledger of spends and reservations, and the budget a run draws on."""
