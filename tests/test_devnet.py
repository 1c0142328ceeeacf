import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from eth_account import Account

from coopflower.ledger import CoopLedger, connect


def test_devnet_serves_a_deployed_contract_until_stopped() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "coopflower", "devnet", "--no-ipfs", "--seconds", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        config = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                config = json.loads(line)
                break
        assert config is not None, proc.stderr.read() if proc.stderr else ""
        chain = connect(config["chain"], private_key=config["chain-key"])
        ledger = CoopLedger.at(chain, config["contract"])
        initiator = Account.from_key(config["chain-key"]).address
        assert ledger.is_authority(initiator)
        assert not ledger.is_authority(Account.create().address)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # SIGTERM stops the chain node too: nothing answers on its port afterwards
    time.sleep(1)
    try:
        urllib.request.urlopen(config["chain"], data=b"{}", timeout=5)
        still_up = True
    except urllib.error.HTTPError:  # an HTTP answer of any status: something is listening
        still_up = True
    except (urllib.error.URLError, ConnectionError):
        still_up = False
    assert not still_up, "devnet left its chain node running"
