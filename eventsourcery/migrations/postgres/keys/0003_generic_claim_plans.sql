-- The statements inside eventsourcery_claim_keys take the claimed keys as arrays. PostgreSQL
-- plans such a statement for the arrays of each call as long as that plan looks cheaper than
-- one for any arrays, which it always does, so every claim was planned again. Planning costs
-- about as much as running these statements: use the plan made once per connection.
ALTER FUNCTION eventsourcery_claim_keys(UUID[], BIGINT[], BYTEA[], TEXT[], BIGINT)
    SET plan_cache_mode = force_generic_plan;
