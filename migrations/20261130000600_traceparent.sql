-- Each saga's W3C trace context (the `traceparent` of the span that started it): sagad continues that
-- trace for every step, on whichever instance drives the saga, and sends it to the participants. NULL
-- when traces were not exported and the caller sent none. A nullable column without a default is added
-- without rewriting the table.
ALTER TABLE sagas ADD COLUMN traceparent text;
