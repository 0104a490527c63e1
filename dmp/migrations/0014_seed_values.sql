-- Value-based lookalikes: a seed list may carry a value per ID (a purchase
-- amount, >= 0) that weights its seeds in the model. NULL when the list has
-- no value column. A device reached by several seeds keeps the largest value.
ALTER TABLE seed_ids ADD COLUMN value DOUBLE;
ALTER TABLE seed_matches ADD COLUMN value DOUBLE;
