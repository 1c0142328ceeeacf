// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title CoopLedger: the task life-cycle of blockchain-coordinated cooperative learning.
/// @notice An application initiator (an authority) publishes a task and escrows its rewards;
/// computing and verification contributors register with a security deposit under the address
/// they sign with; each round collects EIP-712-signed submissions (model CID + content hash),
/// assigns verifiers from the hash of a block mined after the submission window closed, collects
/// signed votes, settles by the majority of votes cast (with a quorum), pays and penalises, and
/// records the MetaModel's CID. Batches are relayed by anyone: every item carries its author's
/// signature, checked here with ecrecover, so a relayer can delay a message but cannot forge it.
/// Authority is contract-level, on top of whatever consensus (e.g. clique PoA) runs the chain.
contract CoopLedger {
    // ------------------------------------------------------------------ errors
    error NotAuthority(address account);
    error NotInitiatorOrAuthority(uint256 taskId, address account);
    error UnknownTask(uint256 taskId);
    error TaskIsClosed(uint256 taskId);
    error TaskNotClosed(uint256 taskId);
    error InvalidTaskParameter(string name);
    error InsufficientDeposit(uint256 sent, uint256 required);
    error DepositMismatch(uint256 sent, uint256 expected);
    error AlreadyRegistered(uint256 taskId, address participant);
    error TooManyParticipants(uint256 taskId);
    error NotRegistered(uint256 taskId, address account);
    error InvalidSignature(address expected, address recovered);
    error SignatureReplayed(uint256 taskId, uint32 round, address signer);
    error AlreadySubmitted(uint256 taskId, uint32 round, address contributor);
    error InvalidCid(uint256 length);
    error EmptyBatch();
    error WrongRoundState(uint256 taskId, uint32 round, uint8 state);
    error RoundInProgress(uint256 taskId, uint32 round);
    error SubmissionWindowClosed(uint256 taskId, uint32 round, uint64 deadlineBlock);
    error SubmissionWindowOpen(uint256 taskId, uint32 round, uint64 deadlineBlock);
    error RoundFull(uint256 taskId, uint32 round, uint32 maxSubmissions);
    error InsufficientEscrow(uint256 available, uint256 required);
    error NotEnoughVerifiers(uint256 participants, uint16 k);
    error RandomnessNotReady(uint64 randomnessBlock, uint256 currentBlock);
    error RandomnessExpired(uint64 randomnessBlock, uint256 currentBlock);
    error RandomnessAvailable(uint64 randomnessBlock);
    error UnknownSubmission(uint256 taskId, uint32 round, uint32 submission);
    error NotAssigned(uint256 taskId, uint32 round, uint32 submission, address verifier);
    error AlreadyVoted(uint256 taskId, uint32 round, uint32 submission, address verifier);
    error VoteTooLate(uint64 deadlineBlock, uint256 currentBlock);
    error SettlementTooEarly(uint64 deadlineBlock, uint256 currentBlock);
    error MetaModelAlreadyRecorded(uint256 taskId, uint32 round);
    error NothingToWithdraw(address account);
    error TransferFailed(address account, uint256 amount);
    error DuplicateModel(uint256 taskId, bytes32 contentHash);
    error ModelMismatch(uint256 taskId, uint32 round, uint32 submission);
    error RegistrationClosed(uint256 taskId);
    error RefreshLimitReached(uint256 taskId, uint32 round, uint8 refreshes);
    error TaskNotExpired(uint256 taskId, uint64 expiresAfterBlock);
    error RevealWindowOpen(uint256 taskId, uint32 round, uint64 revealEnd);
    error RevealWindowClosed(uint256 taskId, uint32 round, uint64 revealEnd);
    error CommitsMismatch(uint256 taskId, uint32 round);
    error BadReveal(uint256 taskId, uint32 round, uint32 submission);
    error NotRevealed(uint256 taskId, uint32 round, uint32 submission);
    error GraceNotOver(uint256 taskId, uint32 round, uint64 graceEnd);

    // ------------------------------------------------------------------ types
    uint8 internal constant ROUND_NONE = 0;
    uint8 internal constant ROUND_OPEN = 1;
    uint8 internal constant ROUND_VOTING = 2;
    uint8 internal constant ROUND_SETTLED = 3;
    uint8 internal constant ROUND_SETTLING = 4; // settled in part: more `settle` batches to come

    uint8 internal constant SUB_PENDING = 0;
    uint8 internal constant SUB_ACCEPTED = 1;
    uint8 internal constant SUB_REJECTED = 2;
    uint8 internal constant SUB_NO_QUORUM = 3;
    uint8 internal constant SUB_UNREVEALED = 4; // its contributor did not reveal its seed share

    uint8 internal constant PENALTY_WRONG_VOTE = 1;
    uint8 internal constant PENALTY_NO_VOTE = 2;
    uint8 internal constant PENALTY_NO_REVEAL = 3;

    /// @dev how often a round's randomness may be moved to a new block after its hash expired
    uint8 internal constant MAX_REFRESHES = 1;
    /// @dev blockhash(n) is only available for the 256 most recent blocks
    uint256 internal constant HASH_HORIZON = 256;

    /// @notice What an initiator publishes. Amounts in wei; windows in blocks.
    struct TaskParams {
        bytes32 specHash; // hash of the model specification
        uint16 k; // verifiers per submission (1..16)
        uint16 quorum; // minimum votes cast for a decision (1..k)
        uint16 minAccuracyBps; // acceptance criterion, basis points
        uint32 submitBlocks; // submission window length
        uint32 voteBlocks; // voting window length, from the randomness block
        uint32 maxSubmissions; // per round; sizes the escrow reservation
        uint128 reward; // per accepted model
        uint128 verifierFee; // per verifier paid
        uint128 minDeposit; // security deposit required to register
        uint128 penaltyWrongVote; // taken from a deposit for voting against a majority
        uint128 penaltyNoVote; // taken from a deposit for not voting when assigned
        uint32 idleBlocks; // after this many blocks without a round event anyone may close the task
        bool inviteOnly; // only the initiator (or an authority) registers participants
        uint32 revealBlocks; // 0: seed from the randomness block alone; else the window in which
        // contributors reveal the seed shares they committed to in their submissions
        uint32 graceBlocks; // an authority may close the submission window early only once every
        // participant submitted or this many blocks passed since the last batch (0: at once)
    }

    struct Task {
        address initiator;
        uint32 roundCount;
        bool closed;
        uint128 escrow;
        uint64 lastActive; // block of the last publish / openRound / settle
        TaskParams params;
    }

    struct Participant {
        uint128 deposit;
        uint32 index; // position in the task's participant list
        uint32 lastRound; // last round this participant submitted in (0 = never)
        uint32 lastSubmission; // its submission id in that round
        bool registered;
    }

    struct Round {
        uint64 submitEnd; // last block accepting submissions
        uint64 randBlock; // block whose hash seeds verifier assignment; while the round is open,
        // the block of its last submission batch (or its opening): the grace counts from it
        uint64 voteEnd; // last block accepting votes
        uint32 nSubmissions;
        uint8 state;
        uint32 nParticipants; // participant pool snapshot at close
        uint32 accepted;
        uint128 reserved; // escrow reserved for this round's payouts
        bytes32 seed; // keccak256(blockhash(randBlock), taskId, round), fixed once
        bytes32 metaDigest; // digest of the MetaModel's CID and content hash
        uint8 refreshes; // times the randomness block was moved after its hash expired
        uint64 revealEnd; // last block accepting seed shares (= randBlock without reveals)
        uint32 revealed; // submissions whose seed share was revealed
        bytes32 commitAcc; // keccak chain of the recorded submissions' seed commitments
        bytes32 mix; // XOR of the revealed seed shares (stored while shares are missing)
        bytes32 randHash; // blockhash(randBlock), kept by a reveal that leaves shares missing
        uint32 settled; // while SETTLING: submissions settled so far (ids 0 .. settled - 1)
        bool settleVoid; // while SETTLING: the round's randomness was lost, it settles void
        uint128 settledPaid; // while SETTLING: paid by the batches so far
    }

    struct SeedShare {
        uint32 submission;
        bytes32 share;
    }

    struct SignedRegistration {
        address participant;
        uint128 deposit;
        bytes32 r;
        bytes32 vs; // EIP-2098 compact signature
    }

    struct SignedSubmission {
        address contributor;
        bytes32 contentHash;
        bytes32 seedCommit; // keccak256(abi.encode(share, contributor)); zero without reveals
        bytes cid;
        bytes32 r;
        bytes32 vs;
    }

    /// @dev modelDigest (what the verifier signed) and contentHash locate the submission's
    /// record, checked against (round, submission): the contract keeps one slot per model.
    struct SignedVote {
        address verifier;
        uint32 submission;
        bool accept;
        uint16 scoreBps;
        bytes32 modelDigest;
        bytes32 contentHash;
        bytes32 r;
        bytes32 vs;
    }

    // ------------------------------------------------------------------ EIP-712
    bytes32 public constant REGISTRATION_TYPEHASH =
        keccak256("Registration(uint256 taskId,address participant,uint128 deposit)");
    bytes32 public constant SUBMISSION_TYPEHASH = keccak256(
        "Submission(uint256 taskId,uint32 round,address contributor,bytes cid,bytes32 contentHash,bytes32 seedCommit)"
    );
    bytes32 public constant VOTE_TYPEHASH = keccak256(
        "Vote(uint256 taskId,uint32 round,uint32 submission,bytes32 modelDigest,address verifier,bool accept,uint16 scoreBps)"
    );
    bytes32 internal constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    uint256 internal constant HALF_N =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    uint256 internal constant LANE = 0xFFFFFFFFFFFFFFFF;

    uint256 internal immutable cachedChainId;
    bytes32 internal immutable cachedDomain;

    // ------------------------------------------------------------------ storage
    mapping(address => bool) public isAuthority;
    address[] internal authorityList;
    uint256 public taskCount;
    mapping(uint256 => Task) internal tasks;
    mapping(uint256 => address[]) internal participantList;
    mapping(uint256 => mapping(address => Participant)) internal participants;
    mapping(bytes32 => Round) internal rounds; // key: keccak256(taskId, round)
    /// @dev one slot per submitted model, keyed by its content hash within the task:
    /// keccak256(modelDigest, round, submission). It makes a content hash unique in a task
    /// (a copy finds the slot taken) and lets a vote prove which model it is about.
    mapping(uint256 => mapping(bytes32 => bytes32)) internal models;
    /// @dev four submissions per word, 64 bits each: contributor index (24), status (8),
    /// voted mask (16), yes mask (16); bit j of a mask = the j-th assigned verifier.
    mapping(bytes32 => mapping(uint256 => uint256)) internal laneWords;
    mapping(address => uint256) public balanceOf;
    /// @dev one bit per submission: its seed share was revealed
    mapping(bytes32 => mapping(uint256 => uint256)) internal revealedBits;

    // ------------------------------------------------------------------ events
    event AuthorityAdded(address indexed authority);
    event TaskPublished(uint256 indexed taskId, address indexed initiator, TaskParams params, uint256 escrow);
    event TaskFunded(uint256 indexed taskId, address indexed funder, uint256 amount);
    event TaskClosed(uint256 indexed taskId, uint256 refund);
    event Registered(
        uint256 indexed taskId, address indexed participant, uint32 index, uint256 deposit, address payer
    );
    event RoundOpened(uint256 indexed taskId, uint32 indexed round, uint64 submitEnd, uint256 reserved);
    event Submitted(
        uint256 indexed taskId,
        uint32 indexed round,
        uint32 submission,
        address indexed contributor,
        bytes cid,
        bytes32 contentHash,
        bytes32 modelDigest,
        bytes32 seedCommit
    );
    event SubmissionsClosed(
        uint256 indexed taskId,
        uint32 indexed round,
        uint32 submissions,
        uint32 participants,
        uint64 randBlock,
        uint64 voteEnd
    );
    event RandomnessFixed(uint256 indexed taskId, uint32 indexed round, uint64 randBlock, bytes32 seed);
    event RandomnessRefreshed(
        uint256 indexed taskId, uint32 indexed round, uint64 expiredBlock, uint64 randBlock, uint64 voteEnd
    );
    event RandomnessLost(uint256 indexed taskId, uint32 indexed round, uint64 randBlock);
    event SeedRevealed(uint256 indexed taskId, uint32 indexed round, uint32 submission, bytes32 share);
    /// @notice A batch item left out without reverting the batch; `reason` is the selector of
    /// the named error: AlreadySubmitted (the contributor has a submission in this round),
    /// SignatureReplayed (this very message is recorded), DuplicateModel (this content hash
    /// was already submitted in the task, by anyone, in any round).
    event SubmissionSkipped(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed contributor,
        uint32 item,
        bytes4 reason,
        bytes32 contentHash
    );
    /// @notice A vote left out without reverting the batch (`reason`: AlreadyVoted's selector).
    event VoteSkipped(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed verifier,
        uint32 item,
        uint32 submission,
        bytes4 reason
    );
    event VoteCast(
        uint256 indexed taskId,
        uint32 indexed round,
        uint32 submission,
        address indexed verifier,
        bool accept,
        uint16 scoreBps
    );
    event SubmissionSettled(
        uint256 indexed taskId,
        uint32 indexed round,
        uint32 submission,
        address indexed contributor,
        uint8 status,
        uint16 yesVotes,
        uint16 votesCast
    );
    event Paid(uint256 indexed taskId, uint32 indexed round, address indexed account, uint256 amount);
    event Penalized(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed account,
        uint32 submission,
        uint8 reason,
        uint256 amount
    );
    event RoundSettling(uint256 indexed taskId, uint32 indexed round, uint32 settled, uint32 submissions);
    event RoundSettled(
        uint256 indexed taskId, uint32 indexed round, uint32 accepted, uint256 paid, uint256 returned
    );
    event MetaModelRecorded(
        uint256 indexed taskId, uint32 indexed round, bytes cid, bytes32 contentHash, bytes32 digest
    );
    event RoundLogged(
        uint256 indexed taskId, uint32 indexed round, address indexed sender, bytes cid, bytes32 contentHash
    );
    event DepositReleased(uint256 indexed taskId, address indexed participant, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event ToppedUp(address indexed account, uint256 amount);

    // ------------------------------------------------------------------ set-up
    /// @param initialAuthorities the accounts allowed to publish tasks and open rounds
    constructor(address[] memory initialAuthorities) {
        if (initialAuthorities.length == 0) revert InvalidTaskParameter("authorities");
        for (uint256 i = 0; i < initialAuthorities.length; i++) {
            address a = initialAuthorities[i];
            if (!isAuthority[a]) {
                isAuthority[a] = true;
                authorityList.push(a);
                emit AuthorityAdded(a);
            }
        }
        cachedChainId = block.chainid;
        cachedDomain = _buildDomain();
    }

    modifier onlyAuthority() {
        if (!isAuthority[msg.sender]) revert NotAuthority(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ tasks
    /// @notice Publish a task; msg.value becomes its escrow. Only authorities.
    function publishTask(TaskParams calldata p) external payable onlyAuthority returns (uint256 taskId) {
        if (p.k == 0 || p.k > 16) revert InvalidTaskParameter("k");
        if (p.quorum == 0 || p.quorum > p.k) revert InvalidTaskParameter("quorum");
        if (p.minAccuracyBps > 10000) revert InvalidTaskParameter("minAccuracyBps");
        if (p.submitBlocks == 0) revert InvalidTaskParameter("submitBlocks");
        if (p.voteBlocks == 0) revert InvalidTaskParameter("voteBlocks");
        if (p.maxSubmissions == 0) revert InvalidTaskParameter("maxSubmissions");
        if (p.idleBlocks == 0) revert InvalidTaskParameter("idleBlocks");
        // shares are revealed while the randomness block's hash is still readable
        if (p.revealBlocks >= HASH_HORIZON) revert InvalidTaskParameter("revealBlocks");
        if (p.graceBlocks >= p.submitBlocks) revert InvalidTaskParameter("graceBlocks");
        taskId = ++taskCount;
        Task storage t = tasks[taskId];
        t.initiator = msg.sender;
        t.escrow = uint128(msg.value);
        t.lastActive = uint64(block.number);
        t.params = p;
        emit TaskPublished(taskId, msg.sender, p, msg.value);
    }

    /// @notice Add to a task's escrow.
    function fundTask(uint256 taskId) external payable {
        Task storage t = _openTask(taskId);
        t.escrow += uint128(msg.value);
        emit TaskFunded(taskId, msg.sender, msg.value);
    }

    /// @notice Close a task: no round in progress; the escrow goes back to the initiator's
    /// balance and participants' deposits become releasable. The initiator or an authority
    /// may close at any time; anyone once `idleBlocks` passed since the task was published or
    /// a round was last opened or settled (an abandoned task cannot lock deposits).
    function closeTask(uint256 taskId) external {
        Task storage t = _openTask(taskId);
        if (msg.sender != t.initiator && !isAuthority[msg.sender]) {
            uint64 expires = t.lastActive + t.params.idleBlocks;
            if (block.number <= expires) revert TaskNotExpired(taskId, expires);
        }
        _noRoundInProgress(taskId, t);
        t.closed = true;
        uint256 refund = t.escrow;
        t.escrow = 0;
        balanceOf[t.initiator] += refund;
        emit TaskClosed(taskId, refund);
    }

    // ------------------------------------------------------------------ participants
    /// @notice Register msg.sender for a task with msg.value as its security deposit; only
    /// while no round is in progress, and not in an invite-only task.
    function register(uint256 taskId) external payable {
        Task storage t = _openTask(taskId);
        if (t.params.inviteOnly) revert RegistrationClosed(taskId);
        _noRoundInProgress(taskId, t);
        _register(taskId, t, msg.sender, msg.value, msg.sender);
    }

    /// @notice Register nodes from their signed consent (EIP-712 Registration); the sender pays
    /// the deposits (msg.value must equal their sum), credited to each node's address. Only
    /// while no round is in progress; in an invite-only task only the initiator or an authority.
    function registerFor(uint256 taskId, SignedRegistration[] calldata regs) external payable {
        if (regs.length == 0) revert EmptyBatch();
        Task storage t = _openTask(taskId);
        if (t.params.inviteOnly) _onlyInitiatorOrAuthority(taskId, t);
        _noRoundInProgress(taskId, t);
        uint256 total = 0;
        for (uint256 i = 0; i < regs.length; i++) {
            SignedRegistration calldata g = regs[i];
            bytes32 structHash = keccak256(abi.encode(REGISTRATION_TYPEHASH, taskId, g.participant, g.deposit));
            _checkSig(structHash, g.r, g.vs, g.participant);
            // the participant's own balance pays first (its signed consent names the deposit):
            // a node that topped up risks its own money, not the relayer's
            uint256 own = balanceOf[g.participant];
            if (own > g.deposit) own = g.deposit;
            if (own != 0) balanceOf[g.participant] -= own;
            _register(taskId, t, g.participant, g.deposit, own == g.deposit ? g.participant : msg.sender);
            total += g.deposit - own;
        }
        if (total != msg.value) revert DepositMismatch(msg.value, total);
    }

    /// @notice After a task closed, move deposits to their owners' withdrawable balances.
    function releaseDeposits(uint256 taskId, address[] calldata accounts) external {
        Task storage t = _task(taskId);
        if (!t.closed) revert TaskNotClosed(taskId);
        for (uint256 i = 0; i < accounts.length; i++) {
            Participant storage p = participants[taskId][accounts[i]];
            uint256 amount = p.deposit;
            if (amount == 0) continue;
            p.deposit = 0;
            balanceOf[accounts[i]] += amount;
            emit DepositReleased(taskId, accounts[i], amount);
        }
    }

    /// @notice Withdraw msg.sender's balance (rewards, fees, refunds, released deposits).
    /// @notice Add to the sender's balance in the contract, from which `registerFor` takes the
    /// sender's deposits (and `withdraw` returns what is left).
    function topUp() external payable {
        if (msg.value == 0) revert InvalidTaskParameter("value");
        balanceOf[msg.sender] += msg.value;
        emit ToppedUp(msg.sender, msg.value);
    }

    function withdraw() external {
        uint256 amount = balanceOf[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        balanceOf[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    // ------------------------------------------------------------------ rounds
    /// @notice Open the next round; reserves maxSubmissions * (reward + k * fee) of escrow.
    function openRound(uint256 taskId) external onlyAuthority returns (uint32 round) {
        Task storage t = _openTask(taskId);
        uint32 last = _noRoundInProgress(taskId, t);
        TaskParams storage p = t.params;
        uint256 reserve = uint256(p.maxSubmissions) * (uint256(p.reward) + uint256(p.k) * p.verifierFee);
        if (t.escrow < reserve) revert InsufficientEscrow(t.escrow, reserve);
        t.escrow -= uint128(reserve);
        t.lastActive = uint64(block.number);
        round = last + 1;
        t.roundCount = round;
        Round storage rd = rounds[_roundKey(taskId, round)];
        rd.submitEnd = uint64(block.number + p.submitBlocks);
        rd.randBlock = uint64(block.number); // the grace of an early close counts from here
        rd.state = ROUND_OPEN;
        rd.reserved = uint128(reserve);
        emit RoundOpened(taskId, round, rd.submitEnd, reserve);
    }

    /// @notice Record signed submissions (one transaction for all contributors). With
    /// closeWindow (an authority only) the submission window closes after them if every
    /// registered participant has now submitted (or the task has no grace); otherwise it stays
    /// open, so that a contributor the relayer left out can still send its own signed
    /// submission, and closes after the grace (`closeSubmissions`). An item that
    /// someone other than the relayer can make stale (its contributor already submitted in
    /// this round, the same signed message was already recorded, or its content hash was
    /// already submitted in this task: a copied model) is skipped with `SubmissionSkipped`,
    /// naming the error; the rest of the batch is recorded. A malformed, unsigned or
    /// outsider's item reverts the batch (the relayer checks those off chain).
    function submitBatch(uint256 taskId, uint32 round, SignedSubmission[] calldata subs, bool closeWindow)
        external
    {
        Task storage t = _task(taskId);
        bytes32 rk = _roundKey(taskId, round);
        Round storage rd = rounds[rk];
        if (rd.state != ROUND_OPEN) revert WrongRoundState(taskId, round, rd.state);
        if (block.number > rd.submitEnd) revert SubmissionWindowClosed(taskId, round, rd.submitEnd);
        uint256 n = rd.nSubmissions;
        bytes32 acc = rd.commitAcc;
        if (n + subs.length > t.params.maxSubmissions) {
            revert RoundFull(taskId, round, t.params.maxSubmissions);
        }
        for (uint256 i = 0; i < subs.length; i++) {
            SignedSubmission calldata s = subs[i];
            if (s.cid.length == 0 || s.cid.length > 64) revert InvalidCid(s.cid.length);
            Participant storage p = participants[taskId][s.contributor];
            if (!p.registered) revert NotRegistered(taskId, s.contributor);
            bytes32 cidHash = keccak256(s.cid);
            _checkSig(
                keccak256(
                    abi.encode(SUBMISSION_TYPEHASH, taskId, round, s.contributor, cidHash, s.contentHash, s.seedCommit)
                ),
                s.r,
                s.vs,
                s.contributor
            );
            bytes32 digest = keccak256(abi.encode(cidHash, s.contentHash));
            bytes32 held = models[taskId][s.contentHash];
            bytes4 skip;
            if (p.lastRound == round) {
                skip = held == _mark(digest, round, p.lastSubmission)
                    ? SignatureReplayed.selector
                    : AlreadySubmitted.selector;
            } else if (held != bytes32(0)) {
                skip = DuplicateModel.selector;
            }
            if (skip != bytes4(0)) {
                emit SubmissionSkipped(taskId, round, s.contributor, uint32(i), skip, s.contentHash);
                continue;
            }
            models[taskId][s.contentHash] = _mark(digest, round, n);
            p.lastRound = round;
            p.lastSubmission = uint32(n);
            laneWords[rk][n >> 2] |= uint256(p.index) << ((n & 3) * 64);
            acc = keccak256(abi.encode(acc, s.seedCommit));
            emit Submitted(taskId, round, uint32(n), s.contributor, s.cid, s.contentHash, digest, s.seedCommit);
            n++;
        }
        rd.nSubmissions = uint32(n);
        rd.randBlock = uint64(block.number); // the last batch: the grace restarts
        if (t.params.revealBlocks != 0) rd.commitAcc = acc;
        if (closeWindow) {
            if (!isAuthority[msg.sender]) revert NotAuthority(msg.sender);
            if (t.params.graceBlocks == 0 || n == participantList[taskId].length) {
                _close(taskId, round, t, rd);
            }
        }
    }

    /// @notice Close the submission window: anyone once it expired; an authority earlier, once
    /// every registered participant submitted or `graceBlocks` blocks passed since the round's
    /// last submission batch (or its opening): a relayer that leaves a submission out cannot
    /// close the window before its contributor (or anyone) sent it. Verifier assignment then
    /// uses the hash of the next block, which nobody knows yet.
    function closeSubmissions(uint256 taskId, uint32 round) external {
        Task storage t = _task(taskId);
        Round storage rd = rounds[_roundKey(taskId, round)];
        if (rd.state != ROUND_OPEN) revert WrongRoundState(taskId, round, rd.state);
        if (block.number <= rd.submitEnd) {
            if (!isAuthority[msg.sender]) revert SubmissionWindowOpen(taskId, round, rd.submitEnd);
            uint64 graceEnd = rd.randBlock + t.params.graceBlocks;
            if (rd.nSubmissions < participantList[taskId].length && block.number <= graceEnd) {
                revert GraceNotOver(taskId, round, graceEnd);
            }
        }
        _close(taskId, round, t, rd);
    }

    /// @notice Store the round's seed (anyone; votes and settlement do it too).
    function fixRandomness(uint256 taskId, uint32 round) external returns (bytes32) {
        Round storage rd = rounds[_roundKey(taskId, round)];
        if (rd.state != ROUND_VOTING) revert WrongRoundState(taskId, round, rd.state);
        return _seed(taskId, round, rd);
    }

    /// @notice Reveal contributors' seed shares (anyone may send them: a share proves itself
    /// against the commitment its contributor signed in its submission), after the randomness
    /// block and until revealEnd. `commits` are every recorded submission's seed commitment in
    /// id order (from the `Submitted` events), checked against the round's keccak chain. A share
    /// already revealed is passed over. The seed is keccak256(blockhash(randBlock), XOR of the
    /// shares, taskId, round), fixed once every share is in or revealEnd passed: the sealer of
    /// the randomness block does not know the shares, and a share's owner commits before the
    /// block exists; a contributor that does not reveal loses its submission and a penalty.
    function revealSeeds(uint256 taskId, uint32 round, bytes32[] calldata commits, SeedShare[] calldata shares)
        external
    {
        bytes32 rk = _roundKey(taskId, round);
        Round storage rd = rounds[rk];
        if (rd.state != ROUND_VOTING) revert WrongRoundState(taskId, round, rd.state);
        if (block.number <= rd.randBlock) revert RandomnessNotReady(rd.randBlock, block.number);
        if (block.number > rd.revealEnd || rd.seed != bytes32(0)) {
            revert RevealWindowClosed(taskId, round, rd.revealEnd);
        }
        if (shares.length == 0) revert EmptyBatch();
        uint256 nSubs = rd.nSubmissions;
        bytes32 acc = bytes32(0); // the keccak chain of commitments starts from zero
        for (uint256 i = 0; i < commits.length; i++) {
            acc = keccak256(abi.encode(acc, commits[i]));
        }
        if (commits.length != nSubs || acc != rd.commitAcc) revert CommitsMismatch(taskId, round);
        bytes32 mix = rd.mix;
        uint256 revealed = rd.revealed;
        // the revealed bits, kept in memory: stored only when the round stays incomplete
        uint256[] memory bits = new uint256[]((nSubs + 255) >> 8);
        if (revealed != 0) {
            for (uint256 w = 0; w < bits.length; w++) bits[w] = revealedBits[rk][w];
        }
        uint256 before = revealed;
        address[] storage list = participantList[taskId];
        for (uint256 i = 0; i < shares.length; i++) {
            uint32 sub = shares[i].submission;
            if (sub >= nSubs) revert UnknownSubmission(taskId, round, sub);
            uint256 bit = 1 << (sub & 255);
            if (bits[sub >> 8] & bit != 0) continue;
            address contributor = list[(laneWords[rk][sub >> 2] >> ((uint256(sub) & 3) * 64)) & 0xFFFFFF];
            if (keccak256(abi.encode(shares[i].share, contributor)) != commits[sub]) {
                revert BadReveal(taskId, round, sub);
            }
            bits[sub >> 8] |= bit;
            mix ^= shares[i].share;
            revealed++;
            emit SeedRevealed(taskId, round, sub, shares[i].share);
        }
        rd.revealed = uint32(revealed);
        if (revealed == nSubs) {
            // every share is in: the seed now, and no mix, bits or kept block hash to store
            bytes32 bh = rd.randHash != bytes32(0) ? rd.randHash : blockhash(rd.randBlock);
            _fixSeed(taskId, round, rd, bh, mix);
            return;
        }
        if (revealed == before) return;
        if (rd.randHash == bytes32(0)) rd.randHash = blockhash(rd.randBlock);
        rd.mix = mix;
        for (uint256 w = 0; w < bits.length; w++) {
            if (bits[w] != 0) revealedBits[rk][w] = bits[w];
        }
    }

    /// @notice If nobody fixed the seed while its block's hash was available (more than 256
    /// blocks passed), move the randomness to the next block and restart the voting window
    /// (anyone), at most MAX_REFRESHES (1) times per round: whoever can let a seed expire
    /// chooses among at most two verifier draws. When the second randomness expires too, the
    /// round settles void (`RandomnessLost`: no decision, no payment, no penalty).
    function refreshRandomness(uint256 taskId, uint32 round) external {
        Task storage t = _task(taskId);
        Round storage rd = rounds[_roundKey(taskId, round)];
        if (rd.state != ROUND_VOTING) revert WrongRoundState(taskId, round, rd.state);
        // a revealed share kept the block's hash: the seed can no longer expire
        if (
            rd.seed != bytes32(0) || rd.randHash != bytes32(0)
                || block.number <= uint256(rd.randBlock) + HASH_HORIZON
        ) {
            revert RandomnessAvailable(rd.randBlock);
        }
        if (rd.refreshes >= MAX_REFRESHES) revert RefreshLimitReached(taskId, round, rd.refreshes);
        rd.refreshes += 1;
        uint64 expired = rd.randBlock;
        rd.randBlock = uint64(block.number + 1);
        rd.revealEnd = rd.randBlock + t.params.revealBlocks;
        rd.voteEnd = rd.revealEnd + t.params.voteBlocks;
        emit RandomnessRefreshed(taskId, round, expired, rd.randBlock, rd.voteEnd);
    }

    /// @notice Record signed votes (one transaction for all verifiers). Each vote must come
    /// from a verifier assigned to its submission, no later than the round's voteEnd. A vote
    /// counts as a yes iff the verifier signed `accept` (it found the model sound: fetched,
    /// well-formed, no copy) and its signed `scoreBps` reaches the task's `minAccuracyBps`:
    /// the threshold is the task's on chain, whatever a relayer told the verifier. A second
    /// ballot of a verifier on one submission (sent by itself, replayed, or twice in the
    /// batch) is skipped with `VoteSkipped` (AlreadyVoted); the first ballot stands.
    function submitVotes(uint256 taskId, uint32 round, SignedVote[] calldata votes) external {
        Task storage t = _task(taskId);
        bytes32 rk = _roundKey(taskId, round);
        Round storage rd = rounds[rk];
        if (rd.state != ROUND_VOTING) revert WrongRoundState(taskId, round, rd.state);
        if (block.number > rd.voteEnd) revert VoteTooLate(rd.voteEnd, block.number);
        if (votes.length == 0) revert EmptyBatch();
        bytes32 seed = _seed(taskId, round, rd);
        uint256 k = t.params.k;
        uint256 minBps = t.params.minAccuracyBps;
        uint256 pool = rd.nParticipants;
        uint256 nSubs = rd.nSubmissions;
        uint256[] memory chosen = new uint256[](k);
        for (uint256 i = 0; i < votes.length; i++) {
            SignedVote calldata v = votes[i];
            if (v.submission >= nSubs) revert UnknownSubmission(taskId, round, v.submission);
            Participant storage p = participants[taskId][v.verifier];
            if (!p.registered) revert NotRegistered(taskId, v.verifier);
            _checkSig(
                keccak256(
                    abi.encode(
                        VOTE_TYPEHASH,
                        taskId,
                        round,
                        v.submission,
                        v.modelDigest,
                        v.verifier,
                        v.accept,
                        v.scoreBps
                    )
                ),
                v.r,
                v.vs,
                v.verifier
            );
            if (models[taskId][v.contentHash] != _mark(v.modelDigest, round, v.submission)) {
                revert ModelMismatch(taskId, round, v.submission);
            }
            if (!_isRevealed(rk, rd, v.submission)) {
                emit VoteSkipped(taskId, round, v.verifier, uint32(i), v.submission, NotRevealed.selector);
                continue;
            }
            uint256 shift = (uint256(v.submission) & 3) * 64;
            uint256 word = laneWords[rk][v.submission >> 2];
            uint256 lane = (word >> shift) & LANE;
            uint256 pos = _position(seed, v.submission, pool, k, lane & 0xFFFFFF, p.index, chosen);
            if (pos == k || p.index >= pool) revert NotAssigned(taskId, round, v.submission, v.verifier);
            if ((lane >> (32 + pos)) & 1 == 1) {
                emit VoteSkipped(taskId, round, v.verifier, uint32(i), v.submission, AlreadyVoted.selector);
                continue;
            }
            lane |= 1 << (32 + pos);
            if (v.accept && v.scoreBps >= minBps) lane |= 1 << (48 + pos);
            laneWords[rk][v.submission >> 2] = (word & ~(LANE << shift)) | (lane << shift);
            emit VoteCast(taskId, round, v.submission, v.verifier, v.accept, v.scoreBps);
        }
    }

    /// @notice Settle a round after its voting deadline (or earlier once every assigned
    /// verifier has voted): a submission is accepted iff at least `quorum` votes were cast and
    /// more than half of them said yes. Accepted contributors get the reward; verifiers get
    /// the fee when they voted with the majority (or voted at all where there was none: a tie
    /// or no quorum); voting against a majority and not voting cost deposit penalties, which go
    /// to the task's escrow. Unused reservation returns to the escrow.
    /// A call settles at most `count` submissions, the next ones in id order, so that a round
    /// of any size settles in transactions that fit a block (anyone may send them): the first
    /// call fixes what the round settles on (its seed, or that its randomness was lost) and
    /// moves it to SETTLING, where it takes no reveal, vote or refresh; the call that settles
    /// the last submission moves it to SETTLED and returns the unused reservation.
    function settle(uint256 taskId, uint32 round, uint32 count) external {
        Task storage t = _task(taskId);
        bytes32 rk = _roundKey(taskId, round);
        Round storage rd = rounds[rk];
        if (count == 0) revert EmptyBatch();
        uint256 nSubs = rd.nSubmissions;
        uint256 from;
        uint256 paidBefore; // by this round's earlier batches
        if (rd.state == ROUND_VOTING) {
            if (block.number <= rd.voteEnd && !_allVoted(rk, rd, nSubs, t.params.k)) {
                revert SettlementTooEarly(rd.voteEnd, block.number);
            }
            if (
                nSubs > 0 && rd.seed == bytes32(0) && rd.refreshes >= MAX_REFRESHES
                    && block.number > uint256(rd.randBlock) + HASH_HORIZON
            ) {
                // no seed, ever: nobody was assigned, nobody voted; nothing is decided
                rd.settleVoid = true;
                emit RandomnessLost(taskId, round, rd.randBlock);
            }
        } else if (rd.state == ROUND_SETTLING) {
            from = rd.settled;
            paidBefore = rd.settledPaid;
        } else {
            revert WrongRoundState(taskId, round, rd.state);
        }
        uint256 to = nSubs - from > count ? from + count : nSubs;
        uint256 accepted = rd.accepted;
        uint256 paid;
        if (rd.settleVoid) {
            _settleVoid(taskId, round, rk, from, to);
        } else if (to > from) {
            // with reveals and none revealed, no submission is verified: no seed needed
            bytes32 seed = rd.revealEnd != rd.randBlock && rd.revealed == 0 ? bytes32(0) : _seed(taskId, round, rd);
            uint256 a;
            (paid, a) = _settleAll(taskId, round, rk, t, seed, rd.nParticipants, from, to);
            accepted += a;
        }
        rd.accepted = uint32(accepted);
        // what is paid leaves the reservation at once: the funds stay conserved between batches
        uint256 left = rd.reserved - paid;
        paid += paidBefore;
        if (to < nSubs) {
            rd.state = ROUND_SETTLING;
            rd.settled = uint32(to);
            rd.settledPaid = uint128(paid);
            rd.reserved = uint128(left);
            emit RoundSettling(taskId, round, uint32(to), uint32(nSubs));
            return;
        }
        rd.state = ROUND_SETTLED;
        rd.reserved = 0;
        t.escrow += uint128(left);
        t.lastActive = uint64(block.number);
        emit RoundSettled(taskId, round, uint32(accepted), paid, left);
    }

    /// @notice Record the round's MetaModel (initiator or an authority), once, after settlement.
    function recordMetaModel(uint256 taskId, uint32 round, bytes calldata cid, bytes32 contentHash) external {
        Task storage t = _task(taskId);
        _onlyInitiatorOrAuthority(taskId, t);
        Round storage rd = rounds[_roundKey(taskId, round)];
        if (rd.state != ROUND_SETTLED) revert WrongRoundState(taskId, round, rd.state);
        if (rd.metaDigest != bytes32(0)) revert MetaModelAlreadyRecorded(taskId, round);
        if (cid.length == 0 || cid.length > 64) revert InvalidCid(cid.length);
        bytes32 digest = keccak256(abi.encode(keccak256(cid), contentHash));
        rd.metaDigest = digest;
        emit MetaModelRecorded(taskId, round, cid, contentHash, digest);
    }

    /// @notice Cheap log of a round's global model (e.g. Flower's FedAvg baseline): an event
    /// only, no storage. Authorities only; taskId is a free namespace.
    function logRound(uint256 taskId, uint32 round, bytes calldata cid, bytes32 contentHash)
        external
        onlyAuthority
    {
        if (cid.length == 0 || cid.length > 64) revert InvalidCid(cid.length);
        emit RoundLogged(taskId, round, msg.sender, cid, contentHash);
    }

    // ------------------------------------------------------------------ views
    function authorities() external view returns (address[] memory) {
        return authorityList;
    }

    function getTask(uint256 taskId) external view returns (Task memory) {
        return _task(taskId);
    }

    function getRound(uint256 taskId, uint32 round) external view returns (Round memory) {
        return rounds[_roundKey(taskId, round)];
    }

    function getParticipants(uint256 taskId) external view returns (address[] memory) {
        return participantList[taskId];
    }

    function getParticipant(uint256 taskId, address account) external view returns (Participant memory) {
        return participants[taskId][account];
    }

    /// @notice Batch read: withdrawable balances, and deposits in `taskId`, of `accounts`.
    function getAccounts(uint256 taskId, address[] calldata accounts)
        external
        view
        returns (uint256[] memory balances, uint256[] memory deposits)
    {
        balances = new uint256[](accounts.length);
        deposits = new uint256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) {
            balances[i] = balanceOf[accounts[i]];
            deposits[i] = participants[taskId][accounts[i]].deposit;
        }
    }

    /// @notice One submission: its contributor, status (0 pending, 1 accepted, 2 rejected,
    /// 3 no quorum), and vote masks (bit j = the j-th assigned verifier). Its CID, content hash
    /// and model digest are in its `Submitted` event.
    function getSubmission(uint256 taskId, uint32 round, uint32 submission)
        external
        view
        returns (address contributor, uint8 status, uint16 votedMask, uint16 yesMask)
    {
        bytes32 rk = _roundKey(taskId, round);
        if (submission >= rounds[rk].nSubmissions) revert UnknownSubmission(taskId, round, submission);
        uint256 lane = (laneWords[rk][submission >> 2] >> ((uint256(submission) & 3) * 64)) & LANE;
        contributor = participantList[taskId][lane & 0xFFFFFF];
        status = uint8(lane >> 24);
        votedMask = uint16(lane >> 32);
        yesMask = uint16(lane >> 48);
    }

    /// @notice Every submission of a round in one read (same fields as getSubmission).
    function getSubmissions(uint256 taskId, uint32 round)
        external
        view
        returns (
            address[] memory contributors,
            uint8[] memory statuses,
            uint16[] memory votedMasks,
            uint16[] memory yesMasks
        )
    {
        bytes32 rk = _roundKey(taskId, round);
        uint256 n = rounds[rk].nSubmissions;
        contributors = new address[](n);
        statuses = new uint8[](n);
        votedMasks = new uint16[](n);
        yesMasks = new uint16[](n);
        address[] storage list = participantList[taskId];
        for (uint256 s = 0; s < n; s++) {
            uint256 lane = (laneWords[rk][s >> 2] >> ((s & 3) * 64)) & LANE;
            contributors[s] = list[lane & 0xFFFFFF];
            statuses[s] = uint8(lane >> 24);
            votedMasks[s] = uint16(lane >> 32);
            yesMasks[s] = uint16(lane >> 48);
        }
    }

    /// @notice Whether a model with this content hash was already submitted in the task.
    function modelSubmitted(uint256 taskId, bytes32 contentHash) external view returns (bool) {
        return models[taskId][contentHash] != bytes32(0);
    }

    /// @notice The round's seed: stored once fixed, else computed from the block hash when
    /// available; zero when not yet known.
    function seedOf(uint256 taskId, uint32 round) public view returns (bytes32) {
        Round storage rd = rounds[_roundKey(taskId, round)];
        if (rd.seed != bytes32(0)) return rd.seed;
        if (rd.state < ROUND_VOTING || block.number <= rd.randBlock) return bytes32(0);
        if (rd.revealEnd == rd.randBlock) {
            bytes32 bh = blockhash(rd.randBlock);
            if (bh == bytes32(0)) return bytes32(0);
            return keccak256(abi.encode(bh, taskId, round));
        }
        // with reveals: known once every share is in or the reveal window passed
        if (rd.revealed < rd.nSubmissions && block.number <= rd.revealEnd) return bytes32(0);
        bytes32 h = rd.randHash != bytes32(0) ? rd.randHash : blockhash(rd.randBlock);
        if (h == bytes32(0)) return bytes32(0);
        return keccak256(abi.encode(h, rd.mix, taskId, round));
    }

    /// @notice The verifiers assigned to a submission, in mask-bit order.
    function assignedVerifiers(uint256 taskId, uint32 round, uint32 submission)
        external
        view
        returns (address[] memory out)
    {
        bytes32 rk = _roundKey(taskId, round);
        Round storage rd = rounds[rk];
        if (submission >= rd.nSubmissions) revert UnknownSubmission(taskId, round, submission);
        bytes32 seed = seedOf(taskId, round);
        if (seed == bytes32(0)) revert RandomnessNotReady(rd.randBlock, block.number);
        uint256 k = tasks[taskId].params.k;
        uint256[] memory idx = new uint256[](k);
        uint256 lane = (laneWords[rk][submission >> 2] >> ((uint256(submission) & 3) * 64)) & LANE;
        _assign(seed, submission, rd.nParticipants, k, lane & 0xFFFFFF, idx);
        out = new address[](k);
        for (uint256 j = 0; j < k; j++) out[j] = participantList[taskId][idx[j]];
    }

    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomain : _buildDomain();
    }

    // ------------------------------------------------------------------ internals
    function _buildDomain() internal view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("CoopLedger"), keccak256("1"), block.chainid, address(this))
        );
    }

    function _roundKey(uint256 taskId, uint32 round) internal pure returns (bytes32 key) {
        assembly ("memory-safe") {
            mstore(0x00, taskId)
            mstore(0x20, round)
            key := keccak256(0x00, 0x40)
        }
    }

    /// @dev The record of a submitted model: binds its digest to its round and id.
    function _mark(bytes32 digest, uint32 round, uint256 submission) internal pure returns (bytes32 m) {
        assembly ("memory-safe") {
            let f := mload(0x40)
            mstore(f, digest)
            mstore(add(f, 0x20), round)
            mstore(add(f, 0x40), submission)
            m := keccak256(f, 0x60)
        }
    }

    function _task(uint256 taskId) internal view returns (Task storage t) {
        t = tasks[taskId];
        if (t.initiator == address(0)) revert UnknownTask(taskId);
    }

    function _openTask(uint256 taskId) internal view returns (Task storage t) {
        t = _task(taskId);
        if (t.closed) revert TaskIsClosed(taskId);
    }

    function _onlyInitiatorOrAuthority(uint256 taskId, Task storage t) internal view {
        if (msg.sender != t.initiator && !isAuthority[msg.sender]) {
            revert NotInitiatorOrAuthority(taskId, msg.sender);
        }
    }

    /// @dev Returns the task's last round; reverts while it is not settled.
    function _noRoundInProgress(uint256 taskId, Task storage t) internal view returns (uint32 last) {
        last = t.roundCount;
        if (last != 0 && rounds[_roundKey(taskId, last)].state != ROUND_SETTLED) {
            revert RoundInProgress(taskId, last);
        }
    }

    function _register(uint256 taskId, Task storage t, address who, uint256 deposit, address payer) internal {
        if (deposit < t.params.minDeposit) revert InsufficientDeposit(deposit, t.params.minDeposit);
        Participant storage p = participants[taskId][who];
        if (p.registered) revert AlreadyRegistered(taskId, who);
        address[] storage list = participantList[taskId];
        uint256 index = list.length;
        if (index >= 1 << 24) revert TooManyParticipants(taskId);
        list.push(who);
        p.deposit = uint128(deposit);
        p.index = uint32(index);
        p.registered = true;
        emit Registered(taskId, who, uint32(index), deposit, payer);
    }

    function _close(uint256 taskId, uint32 round, Task storage t, Round storage rd) internal {
        uint256 pool = participantList[taskId].length;
        if (rd.nSubmissions > 0 && pool <= t.params.k) revert NotEnoughVerifiers(pool, t.params.k);
        rd.state = ROUND_VOTING;
        rd.nParticipants = uint32(pool);
        rd.randBlock = uint64(block.number + 1);
        rd.revealEnd = rd.randBlock + t.params.revealBlocks;
        rd.voteEnd = rd.revealEnd + t.params.voteBlocks;
        emit SubmissionsClosed(taskId, round, rd.nSubmissions, uint32(pool), rd.randBlock, rd.voteEnd);
    }

    function _seed(uint256 taskId, uint32 round, Round storage rd) internal returns (bytes32 seed) {
        seed = rd.seed;
        if (seed != bytes32(0)) return seed;
        if (block.number <= rd.randBlock) revert RandomnessNotReady(rd.randBlock, block.number);
        if (rd.revealEnd == rd.randBlock) {
            bytes32 bh = blockhash(rd.randBlock);
            if (bh == bytes32(0)) revert RandomnessExpired(rd.randBlock, block.number);
            seed = keccak256(abi.encode(bh, taskId, round));
        } else {
            if (rd.revealed < rd.nSubmissions && block.number <= rd.revealEnd) {
                revert RevealWindowOpen(taskId, round, rd.revealEnd);
            }
            bytes32 bh = rd.randHash != bytes32(0) ? rd.randHash : blockhash(rd.randBlock);
            return _fixSeed(taskId, round, rd, bh, rd.mix);
        }
        rd.seed = seed;
        emit RandomnessFixed(taskId, round, rd.randBlock, seed);
    }

    /// @dev The seed of a round with reveals: keccak256(block hash, XOR of the shares, ids).
    function _fixSeed(uint256 taskId, uint32 round, Round storage rd, bytes32 bh, bytes32 mix)
        internal
        returns (bytes32 seed)
    {
        if (bh == bytes32(0)) revert RandomnessExpired(rd.randBlock, block.number);
        seed = keccak256(abi.encode(bh, mix, taskId, round));
        rd.seed = seed;
        emit RandomnessFixed(taskId, round, rd.randBlock, seed);
    }

    /// @dev Verifier j of a submission: draw keccak256(seed, submission, attempt) mod pool,
    /// skipping the contributor and repeats, until k are drawn. Returns who's position, or k.
    function _position(
        bytes32 seed,
        uint256 submission,
        uint256 pool,
        uint256 k,
        uint256 exclude,
        uint256 who,
        uint256[] memory chosen
    ) internal pure returns (uint256) {
        uint256 found;
        uint256 attempt;
        while (found < k) {
            uint256 idx = _draw(seed, submission, attempt++) % pool;
            if (idx == exclude || _contains(chosen, found, idx)) continue;
            if (idx == who) return found;
            chosen[found++] = idx;
        }
        return k;
    }

    function _assign(bytes32 seed, uint256 submission, uint256 pool, uint256 k, uint256 exclude, uint256[] memory out)
        internal
        pure
    {
        _position(seed, submission, pool, k, exclude, type(uint256).max, out);
    }

    function _draw(bytes32 seed, uint256 submission, uint256 attempt) internal pure returns (uint256 h) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, seed)
            mstore(add(m, 0x20), submission)
            mstore(add(m, 0x40), attempt)
            h := keccak256(m, 0x60)
        }
    }

    function _contains(uint256[] memory a, uint256 n, uint256 x) internal pure returns (bool) {
        for (uint256 i = 0; i < n; i++) {
            if (a[i] == x) return true;
        }
        return false;
    }

    function _allVoted(bytes32 rk, Round storage rd, uint256 nSubs, uint256 k) internal view returns (bool) {
        uint256 full = (1 << k) - 1;
        for (uint256 s = 0; s < nSubs; s++) {
            if (!_isRevealed(rk, rd, s)) continue;
            uint256 lane = (laneWords[rk][s >> 2] >> ((s & 3) * 64)) & LANE;
            if ((lane >> 32) & 0xFFFF != full) return false;
        }
        return true;
    }

    /// @dev true without reveals (the round takes none), else whether the share is in
    function _isRevealed(bytes32 rk, Round storage rd, uint256 s) internal view returns (bool) {
        if (rd.revealEnd == rd.randBlock || rd.revealed == rd.nSubmissions) return true;
        return (revealedBits[rk][s >> 8] >> (s & 255)) & 1 == 1;
    }

    function _popcount(uint256 x) internal pure returns (uint256 c) {
        while (x != 0) {
            x &= x - 1;
            c++;
        }
    }

    function _settleAll(
        uint256 taskId,
        uint32 round,
        bytes32 rk,
        Task storage t,
        bytes32 seed,
        uint256 pool,
        uint256 from,
        uint256 to
    ) internal returns (uint256 paid, uint256 accepted) {
        TaskParams memory p = t.params;
        address[] storage list = participantList[taskId];
        uint256[] memory idx = new uint256[](p.k);
        for (uint256 s = from; s < to; s++) {
            uint256 shift = (s & 3) * 64;
            uint256 word = laneWords[rk][s >> 2];
            uint256 lane = (word >> shift) & LANE;
            uint256 voted = (lane >> 32) & 0xFFFF;
            uint256 yes = (lane >> 48) & 0xFFFF;
            uint256 cast = _popcount(voted);
            uint256 ayes = _popcount(yes);
            uint8 status;
            if (cast < p.quorum) status = SUB_NO_QUORUM;
            else if (2 * ayes > cast) status = SUB_ACCEPTED;
            else status = SUB_REJECTED;
            // a majority exists when the quorum is met and the vote is not tied
            bool majority = cast >= p.quorum && 2 * ayes != cast;
            address contributor = list[lane & 0xFFFFFF];
            if (!_isRevealed(rk, rounds[rk], s)) {
                // no share, no verification: the submission is out and its contributor pays
                _penalize(taskId, round, t, contributor, uint32(s), PENALTY_NO_REVEAL, p.penaltyNoVote);
                laneWords[rk][s >> 2] = (word & ~(uint256(0xFF) << (shift + 24)))
                    | (uint256(SUB_UNREVEALED) << (shift + 24));
                emit SubmissionSettled(taskId, round, uint32(s), contributor, SUB_UNREVEALED, 0, 0);
                continue;
            }
            if (status == SUB_ACCEPTED) {
                accepted++;
                paid += _pay(taskId, round, contributor, p.reward);
            }
            _assign(seed, s, pool, p.k, lane & 0xFFFFFF, idx);
            for (uint256 j = 0; j < p.k; j++) {
                address verifier = list[idx[j]];
                if ((voted >> j) & 1 == 0) {
                    _penalize(taskId, round, t, verifier, uint32(s), PENALTY_NO_VOTE, p.penaltyNoVote);
                } else if (!majority || (((yes >> j) & 1 == 1) == (status == SUB_ACCEPTED))) {
                    paid += _pay(taskId, round, verifier, p.verifierFee);
                } else {
                    _penalize(taskId, round, t, verifier, uint32(s), PENALTY_WRONG_VOTE, p.penaltyWrongVote);
                }
            }
            laneWords[rk][s >> 2] = (word & ~(uint256(0xFF) << (shift + 24))) | (uint256(status) << (shift + 24));
            emit SubmissionSettled(taskId, round, uint32(s), contributor, status, uint16(ayes), uint16(cast));
        }
    }

    function _settleVoid(uint256 taskId, uint32 round, bytes32 rk, uint256 from, uint256 to) internal {
        address[] storage list = participantList[taskId];
        for (uint256 s = from; s < to; s++) {
            uint256 shift = (s & 3) * 64;
            uint256 word = laneWords[rk][s >> 2];
            uint256 lane = (word >> shift) & LANE;
            laneWords[rk][s >> 2] =
                (word & ~(uint256(0xFF) << (shift + 24))) | (uint256(SUB_NO_QUORUM) << (shift + 24));
            emit SubmissionSettled(taskId, round, uint32(s), list[lane & 0xFFFFFF], SUB_NO_QUORUM, 0, 0);
        }
    }

    function _pay(uint256 taskId, uint32 round, address account, uint256 amount) internal returns (uint256) {
        if (amount == 0) return 0;
        balanceOf[account] += amount;
        emit Paid(taskId, round, account, amount);
        return amount;
    }

    function _penalize(
        uint256 taskId,
        uint32 round,
        Task storage t,
        address account,
        uint32 submission,
        uint8 reason,
        uint256 amount
    ) internal {
        Participant storage q = participants[taskId][account];
        if (amount > q.deposit) amount = q.deposit;
        if (amount == 0) return;
        q.deposit -= uint128(amount);
        t.escrow += uint128(amount);
        emit Penalized(taskId, round, account, submission, reason, amount);
    }

    function _checkSig(bytes32 structHash, bytes32 r, bytes32 vs, address expected) internal view {
        bytes32 digest = keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
        bytes32 s = vs & bytes32(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF);
        uint8 v = uint8(uint256(vs) >> 255) + 27;
        address recovered;
        if (uint256(s) <= HALF_N) recovered = ecrecover(digest, v, r, s);
        if (recovered == address(0) || recovered != expected) revert InvalidSignature(expected, recovered);
    }
}
