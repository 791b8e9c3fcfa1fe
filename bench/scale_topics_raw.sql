-- pgbench script (bench/scale.py, section topics, baseline): one single-row INSERT per
-- transaction into scale_raw, a table list-partitioned into :nparts leaf tables shaped
-- like segments (8 per topic). Each client first inserts once into every leaf in turn
-- (:i counts its transactions from 0; the first :nparts warm its backend up), then into
-- a leaf drawn at random. Payload and key as in scale_topics.sql.
\set i :i + 1
\set order_id random(1, 1000000000)
\set customer random(1, 100000)
\set amount random(1, 100000)
\if :i <= :nparts
\set part :i - 1
\else
\set part random(0, :nparts - 1)
\endif
INSERT INTO scale_raw (part, key, value) VALUES (:part, 'customer-' || :customer,
    ('{"order_id": ' || :order_id || ', "customer": "c-' || :customer || '", "amount": ' || :amount || ', "currency": "EUR", "status": "created", "items": 3}')::jsonb);
