-- Checks the existing rows against saga_barrier_row_rules (added NOT VALID by the previous migration). In a
-- transaction of its own, this takes a lock that lets the table's readers and writers carry on.
ALTER TABLE saga_barrier VALIDATE CONSTRAINT saga_barrier_row_rules;
