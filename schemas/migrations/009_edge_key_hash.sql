-- Each edge keeps the hash Kafka's default partitioner takes of its events' key
-- ("post_id:user_id"): toPositive(murmur2(key)), so key_hash % partitions is the
-- likes.events partition of the edge's events for any partition count. The backfill's
-- flow-state records (sinks/outbox_flow_state.py) group a post's edges by partition
-- inside Postgres with it, instead of fetching and hashing every edge.
--
-- likes_edge_key_hash is Kafka's Utils.murmur2 (seed 0x9747b28c) over the key's UTF-8
-- bytes, in 32-bit arithmetic carried in bigints; the tests compare it with
-- core.kafka_partition. The API supplies key_hash with each new edge (hashed in
-- Python); the trigger fills it for any other writer that leaves it out.

CREATE FUNCTION likes_mul32(a BIGINT, b BIGINT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT (((a & 65535) * b) + ((((a >> 16) * b) & 65535) << 16)) & 4294967295 $$;

CREATE FUNCTION likes_edge_key_hash(post BIGINT, usr BIGINT) RETURNS INTEGER
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    data BYTEA := convert_to(post::text || ':' || usr::text, 'UTF8');
    n INTEGER := length(data);
    m CONSTANT BIGINT := 1540483477;  -- 0x5bd1e995
    h BIGINT := 2538058380 # n;       -- seed 0x9747b28c xor length
    k BIGINT;
    i INTEGER := 0;
    tail INTEGER := n & ~3;
BEGIN
    WHILE i < tail LOOP
        k := get_byte(data, i) | (get_byte(data, i + 1) << 8)
             | (get_byte(data, i + 2) << 16) | (get_byte(data, i + 3)::bigint << 24);
        k := likes_mul32(k, m);
        k := k # (k >> 24);
        k := likes_mul32(k, m);
        h := likes_mul32(h, m) # k;
        i := i + 4;
    END LOOP;
    IF n - tail = 3 THEN h := h # (get_byte(data, tail + 2) << 16); END IF;
    IF n - tail >= 2 THEN h := h # (get_byte(data, tail + 1) << 8); END IF;
    IF n - tail >= 1 THEN h := likes_mul32(h # get_byte(data, tail), m); END IF;
    h := likes_mul32(h # (h >> 13), m);
    h := h # (h >> 15);
    RETURN (h & 2147483647)::integer;
END
$$;

ALTER TABLE post_likes ADD COLUMN key_hash INTEGER;
UPDATE post_likes SET key_hash = likes_edge_key_hash(post_id, user_id);
ALTER TABLE post_likes ALTER COLUMN key_hash SET NOT NULL;

CREATE FUNCTION likes_fill_key_hash() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.key_hash := likes_edge_key_hash(NEW.post_id, NEW.user_id);
    RETURN NEW;
END
$$;
CREATE TRIGGER post_likes_key_hash BEFORE INSERT ON post_likes
    FOR EACH ROW WHEN (NEW.key_hash IS NULL) EXECUTE FUNCTION likes_fill_key_hash();
