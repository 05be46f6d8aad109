-- Which request holds an uncompleted Idempotency-Key claim: the transition statement
-- applies a request only while its token still owns the claim (row locked), so an
-- attempt whose claim a retry took over (stale, or its session gone) changes nothing
-- and cannot commit after the client's next request; a failed request releases only
-- its own claim.
ALTER TABLE idempotency_keys ADD COLUMN claim_token UUID;
