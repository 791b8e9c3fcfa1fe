-- examples/blog/schema.sql: the blog platform of the story.
--
-- One event per change of a blog post, published by a trigger in the transaction of
-- the change, consumed by two groups that keep their own tables:
--   search   keeps blog_search (a tsvector per post, GIN-indexed)
--   counter  keeps users.total_blogs
-- Needs the stream extension (CREATE EXTENSION stream). Re-runnable: it drops the
-- story's tables and topic first, and with the topic the groups' offsets.

SET client_min_messages = warning;
DROP TABLE IF EXISTS blog_search, blogs, users;
SELECT stream.drop_topic('blog_published', if_exists => true);
RESET client_min_messages;

-- Four partitions: the unit of parallelism of a group (two workers take two each).
SELECT stream.create_topic('blog_published', partitions => 4);

CREATE TABLE users (
    id          int PRIMARY KEY,
    name        text NOT NULL,
    total_blogs int NOT NULL DEFAULT 0      -- kept by the "counter" group
);

CREATE TABLE blogs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    author_id   int NOT NULL REFERENCES users,
    title       text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON blogs (author_id);

-- Every committed INSERT, UPDATE and DELETE of a post becomes one event
-- {"op", "schema", "table", "new", "old"} keyed by author_id: one author's events
-- land in one partition, in the order of the changes. A rolled-back change was never
-- published.
CREATE TRIGGER blogs_publish
    AFTER INSERT OR UPDATE OR DELETE ON blogs
    FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('blog_published', 'author_id');

-- Kept by the "search" group: one row per post, with its full-text vector.
CREATE TABLE blog_search (
    blog_id     bigint PRIMARY KEY,
    author_id   int NOT NULL,
    title       text NOT NULL,
    document    tsvector NOT NULL
);
CREATE INDEX blog_search_document ON blog_search USING gin (document);
