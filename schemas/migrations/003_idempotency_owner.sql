-- Which database session holds an uncompleted Idempotency-Key claim: a claim whose
-- session is gone (API process killed, server restarted) is taken over at once by a
-- retry instead of answering 409 until it goes stale.
ALTER TABLE idempotency_keys
    ADD COLUMN owner_pid INT,
    ADD COLUMN owner_epoch TIMESTAMPTZ;
