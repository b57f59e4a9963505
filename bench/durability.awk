# The durability check of bench/run, over `strace -f -tt -y -s 64 -o FILE` of
# imc serve: each 250 that acknowledges a message must come after the fsync of
# its file returned, after its rename into in returned (begun after that
# fsync), and after an fsync of in that began after that rename returned and
# itself returned 0. The hardened profile's 250 names the message ("queued as
# ID"), so each is checked against its own message; exchange-4.0's ("250 OK")
# does not, so the n-th acknowledgement must find at least n messages durable.
# Prints one line; exits 1 if any acknowledgement broke the rule.
function ident(s, pat, skip,    id) {
    if (!match(s, pat)) return ""
    id = substr(s, RSTART + skip, RLENGTH - skip)
    gsub(/[>"]/, "", id)
    return id
}
function begun(pid, call,    k) {
    if (call ~ /^fsync\(.*\/imcdata\/in>\)?/) {
        covers[pid] = ""
        for (k in moved) covers[pid] = covers[pid] " " k
    }
    if (call ~ /^(sendto|write|writev)\(/) acked(call)
}
function ended(pid, call, ok,    id, n, ids, i) {
    if (call ~ /^fsync\(/ && call ~ /\/imcdata\/work\//) {
        id = ident(call, "/imcdata/work/[^>]*>", 14)
        if (ok) synced[id] = 1
    } else if (call ~ /^fsync\(/ && call ~ /\/imcdata\/in>/) {
        if (ok) {
            n = split(covers[pid], ids, " ")
            for (i = 1; i <= n; i++) {
                if (!(ids[i] in durable)) { durable[ids[i]] = 1; ndurable++ }
                delete moved[ids[i]]
            }
        }
        delete covers[pid]
    } else if (call ~ /^renameat/ && call ~ /\/imcdata\/work\//) {
        id = ident(call, "/imcdata/work/[^\"]*\"", 14)
        if (ok && (id in synced)) moved[id] = 1
        else if (ok) early++
    }
}
function acked(call,    sock, id) {
    sock = ident(call, "socket:\\[[0-9]+\\]", 0)
    if (call ~ /"354 /) { indata[sock] = 1; return }
    if (!(sock in indata) || call !~ /"[0-9][0-9][0-9][ -]/) return
    delete indata[sock]
    if (call !~ /"250 /) return
    nacks++
    id = ident(call, "queued as [0-9A-Za-z]+", 10)
    if (id != "") {
        named++
        if (!(id in durable)) { bad++; if (bad <= 5) badids = badids " " id }
    } else if (nacks > ndurable) bad++
}
{
    pid = $1
    line = $0
    sub(/^[0-9]+ +[0-9:.]+ /, "", line)
    if (line ~ /<unfinished \.\.\.>$/) { pending[pid] = line; begun(pid, line); next }
    if (line ~ /^<\.\.\. [a-z0-9_]+ resumed>/) {
        ended(pid, pending[pid], line ~ /\) += 0$/)
        delete pending[pid]
        next
    }
    begun(pid, line)
    ended(pid, line, line ~ /\) += 0$/)
}
END {
    how = named ? "each by its id" : "by count"
    printf "%d of %d acknowledged messages durable before their 250 (%s; %d files moved before their fsync)\n", nacks - bad, nacks, how, early
    if (badids != "") printf "  not durable before their 250:%s\n", badids
    exit (bad > 0 || early > 0 || nacks == 0)
}
