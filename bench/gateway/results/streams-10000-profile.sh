set -e
cd /work/main
source .venv/bin/activate
T=$(mktemp -d)
UP=41001; GW=41002
cat > $T/routes.json <<J
{"services":[{"namespace":"default","name":"deepseek","models":["deepseek-r1"],"backends":[{"replica":"paced-0","url":"http://127.0.0.1:$UP"}]}]}
J
python bench/gateway/streams.py upstream $UP 512 25 & UPPID=$!
python -m tierserve.cli.main gateway --routes $T/routes.json --port $GW --log-level WARNING --workers 2 & GWPID=$!
sleep 4
PIDS=$(ss -Hltnp "sport = :$GW" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
echo "gateway pids: $PIDS"
python bench/gateway/streams.py client $GW 10000 10 > $T/client.json & CL=$!
for p in $PIDS; do py-spy record -p $p -d 25 -r 50 -f raw -o /tmp/prof-$p.txt --nonblocking > /dev/null 2>&1 & done
wait $CL
cat $T/client.json
kill $GWPID $UPPID 2>/dev/null || true
sleep 2
pkill -f "streams.py upstream $UP" || true
