-- pgbench script (bench/scale.py, sections topics and inval): one stream.publish per
-- transaction. Each client first publishes once to every partition of scale-1 ..
-- scale-:ntopics in turn (:nwarm = 8 x ntopics transactions, counted by :i, which starts
-- at 0: pgbench keeps a client's variables from one transaction to the next), so that
-- its backend has opened every segment before the measured window; then to a topic drawn
-- at random, routed by the key. Payload and key as in publish.sql.
\set i :i + 1
\set order_id random(1, 1000000000)
\set customer random(1, 100000)
\set amount random(1, 100000)
\if :i <= :nwarm
\set t (:i - 1) / 8 + 1
\set p (:i - 1) % 8
SELECT * FROM stream.publish('scale-' || :t,
    ('{"order_id": ' || :order_id || ', "customer": "c-' || :customer || '", "amount": ' || :amount || ', "currency": "EUR", "status": "created", "items": 3}')::jsonb,
    key => 'customer-' || :customer, partition => :p);
\else
\set t random(1, :ntopics)
SELECT * FROM stream.publish('scale-' || :t,
    ('{"order_id": ' || :order_id || ', "customer": "c-' || :customer || '", "amount": ' || :amount || ', "currency": "EUR", "status": "created", "items": 3}')::jsonb,
    key => 'customer-' || :customer);
\endif
