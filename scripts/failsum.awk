# failsum.awk reads `go test -v` output and prints again, for every failed
# test, the lines it logged (ZooKeeper client chatter left out): the last 80,
# or, after a panic, the 40 before it and the 80 from it. CI shows only the
# tail of a run, so scripts/gotest prints this last.
function flush(pkg,   t, n, from, to, i) {
	for (t in failed) {
		print "--- FAIL: " t " in " pkg
		n = cnt[t]
		if ((t, "panic") in buf) {
			from = buf[t, "panic"] - 40; to = buf[t, "panic"] + 80
		} else {
			from = n - 79; to = n
		}
		if (from < 1) from = 1
		if (to > n) to = n
		if (from > 1) print "    (" from - 1 " earlier lines left out)"
		for (i = from; i <= to; i++) print buf[t, i]
		if (to < n) print "    (" n - to " later lines left out)"
	}
	delete failed; delete cnt; delete buf
}
/^=== (RUN|NAME|CONT|PAUSE)/ { cur = $3; sub(/\/.*/, "", cur); next }
/^ *--- FAIL: / { t = $3; sub(/\/.*/, "", t); failed[t] = 1; next }
/^(ok|FAIL)[ \t]+[^ \t]+/ { if (length(failed) > 0) flush($2); delete cnt; delete buf; cur = ""; next }
/^FAIL$|^PASS$/ { next }
/zktest\.go:[0-9]+: .*level=(DEBUG|INFO)/ { next }
{
	k = (cur == "" ? "(package)" : cur)
	if (/^panic: /) { failed[k] = 1; if (!((k, "panic") in buf)) buf[k, "panic"] = cnt[k] + 1 }
	if (cur != "" || (k, "panic") in buf) buf[k, ++cnt[k]] = $0
}
