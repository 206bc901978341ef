# shellcheck shell=bash
# bench/dataset.sh: the benchmark database on the source.
#
# pgbench -i at BENCH_SCALE (scale 100: 10 million accounts, ~1.5 GB), plus
# bench_docs: 12 rows per scale unit, each a jsonb document between 2 KB and
# 2 MB and a bytea between 1 KB and 1 MB (sizes log-uniform, random content
# that compresses little), ~430 MB of TOAST at scale 100 (~1.9 GB in all).  Deterministic: the
# same scale gives the same data.

bench_generate_dataset() {
  local t0 docs=$((BENCH_SCALE * 12))
  t0=$(bench_now)
  bench_log "generating pgbench -i -s $BENCH_SCALE ..."
  cl_run pgbench -i -q -s "$BENCH_SCALE" "$(cl_uri source "$BENCH_DB")" >"$CL_DIR/pgbench-init.log" 2>&1 || {
    tail -n 20 "$CL_DIR/pgbench-init.log" >&2
    cl_die "pgbench -i failed"
  }
  bench_log "generating bench_docs: $docs jsonb documents (2 KB .. 2 MB) with a bytea (1 KB .. 1 MB) ..."
  cl_psql source -d "$BENCH_DB" -c "
    create table bench_docs (
      id bigint generated always as identity primary key,
      created_at timestamptz not null,
      doc jsonb not null,
      blob bytea
    );
    create index bench_docs_created_at_idx on bench_docs (created_at);"
  # BENCH_JOBS sessions fill it in parallel; sizes and contents depend on the
  # row number only (u() is a uniform number in [0, 1) from an md5).
  local k pids=()
  for ((k = 0; k < BENCH_JOBS; k++)); do
    cl_psql source -d "$BENCH_DB" -c "
      insert into bench_docs (id, created_at, doc, blob) overriding system value
      select g, '2024-01-01 00:00+00'::timestamptz + g * interval '1 min',
             jsonb_build_object(
               'id', g, 'title', 'document ' || g, 'tags', jsonb_build_array('bench', g % 7, g % 13),
               'items', (select jsonb_agg(jsonb_build_object('n', j, 'v', md5(g || ':' || j), 'x', j * 0.5))
                         from generate_series(1, greatest(1, (doc_bytes / 64)::int)) j)),
             (select decode(string_agg(md5(g || '#' || j), ''), 'hex')
              from generate_series(1, greatest(1, (blob_bytes / 16)::int)) j)
      from (select g,
                   2048 * power(1000, ('x' || substr(md5('doc' || g), 1, 8))::bit(32)::bigint / 4294967296.0) as doc_bytes,
                   1024 * power(1000, ('x' || substr(md5('blob' || g), 1, 8))::bit(32)::bigint / 4294967296.0) as blob_bytes
            from generate_series(1, $docs) g where g % $BENCH_JOBS = $k) s" &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || cl_die "filling bench_docs failed"; done
  cl_query source "$BENCH_DB" "select setval(pg_get_serial_sequence('bench_docs', 'id'), $docs)" >/dev/null
  bench_log "vacuum analyze and checkpoint on the source ..."
  cl_psql source -d "$BENCH_DB" -c "vacuum analyze" -c checkpoint
  sync
  # shellcheck disable=SC2034 # used by the sections and the report
  BENCH_SRC_BYTES=$(bench_db_bytes source)
  bench_log "dataset ready in $(bench_secs "$t0" "$(bench_now)") s: $(cl_query source "$BENCH_DB" "
    select pg_size_pretty(pg_database_size(current_database())) || ' in all, of which TOAST '
           || pg_size_pretty(sum(pg_total_relation_size(reltoastrelid))) from pg_class where reltoastrelid <> 0")"
  cl_psql source -d "$BENCH_DB" -c "
    select c.relname as \"table\", to_char(c.reltuples::bigint, 'FM999G999G999') as rows,
           pg_size_pretty(pg_table_size(c.oid)) as \"table+toast\",
           pg_size_pretty(pg_indexes_size(c.oid)) as indexes
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind = 'r' and n.nspname = 'public' order by pg_total_relation_size(c.oid) desc"
}
