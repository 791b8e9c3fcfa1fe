-- pgbench script (bench/scale.py, section retained): one stream.publish per transaction
-- to the topic named by -D topic=..., payload and key as in publish.sql.
\set order_id random(1, 1000000000)
\set customer random(1, 100000)
\set amount random(1, 100000)
SELECT * FROM stream.publish(:topic,
    ('{"order_id": ' || :order_id || ', "customer": "c-' || :customer || '", "amount": ' || :amount || ', "currency": "EUR", "status": "created", "items": 3}')::jsonb,
    key => 'customer-' || :customer);
