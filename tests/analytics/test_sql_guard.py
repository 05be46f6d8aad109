"""``check_query``: hostile or broken SQL is refused with its reason; analyst reads pass."""

from __future__ import annotations

import pytest

from analytics.sql_guard import MAX_SQL_CHARS, QueryRefused, check_query

# (statement, words the refusal must contain)
HOSTILE: list[tuple[str, str]] = [
    ("INSERT INTO likes.like_events_raw (post_id) VALUES (1)", "starts with INSERT"),
    ("ALTER TABLE likes.like_events_raw DELETE WHERE 1", "starts with ALTER"),
    ("CREATE TABLE likes.x (a Int8) ENGINE = Memory", "starts with CREATE"),
    ("DROP TABLE likes.like_events_raw", "starts with DROP"),
    ("TRUNCATE TABLE likes.like_events_raw", "starts with TRUNCATE"),
    ("RENAME TABLE likes.like_events_raw TO likes.gone", "starts with RENAME"),
    ("OPTIMIZE TABLE likes.like_events_raw FINAL", "starts with OPTIMIZE"),
    ("SET readonly = 0", "starts with SET"),
    ("SYSTEM STOP MERGES likes.like_events_raw", "starts with SYSTEM"),
    ("KILL QUERY WHERE 1", "starts with KILL"),
    ("GRANT ALL ON *.* TO analyst", "starts with GRANT"),
    ("ATTACH TABLE likes.x", "starts with ATTACH"),
    ("DETACH TABLE likes.like_events_raw", "starts with DETACH"),
    ("USE system", "starts with USE"),
    ("EXPLAIN INSERT INTO likes.like_events_raw (post_id) VALUES (1)", "starts with EXPLAIN"),
    ("SHOW TABLES", "starts with SHOW"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file()"),
    ("SELECT * FROM url('http://169.254.169.254/', CSV)", "table function url()"),
    ("SELECT * FROM remote('127.0.0.1', system.one)", "table function remote()"),
    ("SELECT * FROM s3('https://bucket.example/k.csv')", "table function s3()"),
    ("SELECT * FROM mysql('h:3306', 'db', 't', 'u', 'p')", "table function mysql()"),
    ("SELECT * FROM executable('x.sh', 'TSV', 'a String')", "table function executable()"),
    ("SELECT * FROM numbers(20000000000)", "table function numbers()"),
    ("SELECT * FROM merge('likes', '.*')", "table function merge()"),
    ("SELECT * FROM view(SELECT * FROM likes.like_events)", "table function view()"),
    ("SELECT * FROM likes.like_events, generateRandom('a Int8')", "table function generateRandom"),
    (
        "SELECT * FROM likes.like_events WHERE post_id IN "
        "(SELECT post_id FROM postgresql('h', 'db', 't', 'u', 'p'))",
        "table function postgresql()",
    ),
    ("SELECT file('/etc/hostname')", "function file() reaches outside"),
    ("SELECT `file`('/etc/hostname')", "function file() reaches outside"),
    ("WITH file('/etc/passwd') AS f SELECT f", "function file() reaches outside"),
    ("SELECT s3Cluster('c', 'https://b/k')", "function s3Cluster() reaches outside"),
    ("SELECT catboostEvaluate('/m.bin', 1)", "function catboostEvaluate() reaches outside"),
    ("SELECT * FROM dictionary('d')", "column list after a table name"),
    ("SELECT * FROM values('a Int8', 1)", "not VALUES"),
    ("DESCRIBE file('/etc/passwd')", "DESCRIBE takes one table"),
    ("SELECT * FROM system.processes", "system.processes is not readable"),
    ("SELECT * FROM system.numbers", "system.numbers is not readable"),
    ("SELECT * FROM default.secrets", "default.secrets is not readable"),
    ("SELECT post_id IN system.users FROM likes.like_events", "system.users is not readable"),
    ("SELECT * FROM a.b.c", "not a plain table name"),
    ("SELECT * FROM {t:Identifier}", "not a plain table name"),
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS clause"),
    ("SELECT count() FROM (SELECT 1 SETTINGS max_threads = 64)", "SETTINGS clause"),
    ("SELECT 1 UNION ALL SELECT 2 SETTINGS max_execution_time = 0", "SETTINGS clause"),
    ("SELECT 1 FORMAT JSON", "FORMAT clause"),
    ("SELECT 1 INTO OUTFILE '/tmp/out.tsv'", "INTO is not allowed"),
    ("SELECT * INTO likes.copy FROM likes.like_events", "INTO is not allowed"),
    ("SELECT 1; SELECT 2", "one statement per query, not 2"),
    ("SELECT 1; DROP TABLE likes.like_events_raw", "one statement per query"),
    ("", "empty"),
    ("  \n\t ", "empty"),
    ("-- only a comment", "empty"),
    (";", "empty"),
    ("SELEC 1", "starts with SELEC"),
    ("SELECT (", "does not parse"),
    ("SELECT 'unterminated", "does not parse"),
    ("SELECT 1 " + " " * MAX_SQL_CHARS, "longer than"),
    ("SELECT " + "(" * 3000 + "1" + ")" * 3000, "nested too deeply"),
]

LEGIT: list[str] = [
    "SELECT count() FROM likes.like_events",
    "SELECT count() FROM like_events",
    "SELECT action, count() AS n, uniqExact(user_id) AS users FROM likes.like_events"
    " GROUP BY action ORDER BY n DESC",
    "SELECT post_id, sum(net) AS net FROM likes.post_like_windows"
    " WHERE window_start >= now() - INTERVAL 1 DAY GROUP BY post_id ORDER BY net DESC LIMIT 10",
    "SELECT toStartOfHour(occurred_at) AS hour, sum(delta) AS net FROM likes.like_events"
    " GROUP BY hour ORDER BY hour",
    "WITH top AS (SELECT post_id, sum(likes) AS l FROM likes.post_like_windows"
    " GROUP BY post_id ORDER BY l DESC LIMIT 5)"
    " SELECT e.post_id, count() AS n FROM likes.like_events AS e"
    " INNER JOIN top ON e.post_id = top.post_id GROUP BY e.post_id",
    "SELECT h.post_id, h.peak_rate, w.likes FROM likes.hot_posts AS h"
    " LEFT JOIN likes.post_like_windows AS w"
    " ON w.post_id = h.post_id AND w.window_start >= h.became_hot_at",
    "SELECT post_id FROM likes.like_events"
    " WHERE post_id IN (SELECT post_id FROM likes.hot_posts WHERE cooled_at IS NULL) LIMIT 100",
    "SELECT post_id, window_start, sum(net) OVER (PARTITION BY post_id ORDER BY window_start"
    " ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running FROM likes.post_like_windows",
    "SELECT post_id, 'like' AS kind FROM likes.like_events WHERE delta > 0 AND post_id = 1"
    " UNION ALL SELECT post_id, 'hot' AS kind FROM likes.hot_posts",
    "SELECT quantile(0.99)(likes) AS p99, countIf(net < 0) AS negative,"
    " argMax(post_id, likes) AS top FROM likes.post_like_windows",
    "SELECT user_id, groupArray(post_id) AS posts FROM likes.like_events"
    " GROUP BY user_id HAVING count() > 1 LIMIT 100",
    "SELECT post_id, occurred_at FROM likes.like_events"
    " ORDER BY occurred_at DESC LIMIT 1 BY post_id",
    "SELECT * FROM (SELECT post_id, row_number() OVER"
    " (PARTITION BY post_id ORDER BY occurred_at) AS rn FROM likes.like_events) WHERE rn = 1",
    "SELECT x FROM likes.like_events ARRAY JOIN [1, 2] AS x LIMIT 10",
    "SELECT count() FROM likes.like_events_raw FINAL",
    "SELECT name, type FROM system.columns WHERE database = 'likes' AND table = 'like_events'",
    "SELECT table, sum(rows) AS n FROM system.parts WHERE database = 'likes' AND active"
    " GROUP BY table",
    "DESCRIBE TABLE likes.post_like_windows",
    "SELECT 1 AS one INTERSECT SELECT 1 AS one",
    "SELECT formatDateTime(now(), '%Y-%m-%d') AS day, currentUser() AS who",
]


@pytest.mark.parametrize(("sql", "reason"), HOSTILE, ids=[s[:60] for s, _ in HOSTILE])
def test_hostile_or_broken_sql_is_refused_with_its_reason(sql: str, reason: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        check_query(sql)
    assert reason in refused.value.reason
    assert str(refused.value).startswith("query refused: ")
    assert "\x1b" not in str(refused.value)


@pytest.mark.parametrize("sql", LEGIT, ids=[s[:60] for s in LEGIT])
def test_analyst_reads_are_accepted_and_stable(sql: str) -> None:
    statement = check_query(sql)
    assert check_query(statement) == statement


def test_the_statement_returned_has_no_comments_or_terminator() -> None:
    assert check_query("SELECT 1 /* a */ -- b\n;") == "SELECT 1"


def test_comment_hidden_text_never_reaches_clickhouse() -> None:
    statement = check_query("SELECT count() FROM likes.like_events /* ; DROP TABLE x */")
    assert "DROP" not in statement


def test_function_names_in_strings_are_data_not_calls() -> None:
    statement = check_query("SELECT 'file(1)' AS f, 'url(' AS u FROM likes.like_events")
    assert "'file(1)'" in statement
