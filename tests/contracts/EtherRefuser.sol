// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

interface ICoopLedger {
    function register(uint256 taskId) external payable;
    function withdraw() external;
}

/// @notice A participant that refuses ether: no receive function, no payable fallback. It
/// registers itself in an open task with msg.value as its deposit and asks CoopLedger for its
/// balance, whose transfer then fails; the ledger's revert (TransferFailed) bubbles up.
/// For tests/test_contract_errors.py, compiled there with the pinned solc-js (scripts/solc).
contract EtherRefuser {
    ICoopLedger public immutable ledger;

    constructor(ICoopLedger ledger_) {
        ledger = ledger_;
    }

    function register(uint256 taskId) external payable {
        ledger.register{value: msg.value}(taskId);
    }

    function withdraw() external {
        ledger.withdraw();
    }
}
