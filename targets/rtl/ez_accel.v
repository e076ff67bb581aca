// ez_accel.v - int8 forward-pass accelerator with an on-chip seed-SGD update (docs/rtl.md).
//
// Holds the parameters theta (int16 master weights, per-layer power-of-two
// step chosen by the controller), one batch of int8 Q3.4 inputs and the
// Rademacher direction of the current seed. A dense layer computes, exactly as
// the fpga-int8 datapath (edgezo/targets/numerics.py, int_linear):
//
//   w_q  = clamp(round_half_even(t / 2^8), -127, 127)     t = sat16(theta + delta * z) (perturbed) or theta
//   b_q  = round_half_even(t / 2^4)                        (bias: the accumulator's scale)
//   acc  = sum_i w_q[o,i] x_q[i] + b_q[o]                  (int32; |acc| < 2^31 for fan-in < 2^16)
//   y_q  = clamp(round_half_even(acc * m / 2^shift), -128, 127), relu: max(y_q, 0)
//
// z is the portable Rademacher direction (docs/directions.md section 4):
// z[i] = 1 - 2 * bit (i & 31) of W(key(seed), i >> 5). The update adds
// delta * z to theta (saturating to int16) over a parameter range.
//
// Interface: a command bus. While busy == 0, hold cmd_valid high for one
// clock with cmd_op / cmd_addr / cmd_data; wait until busy == 0 again; rdata
// then holds the answer of a read.
//   1 WR_PARAM  theta[addr] = data[15:0]          2 RD_PARAM  rdata = theta[addr] (sign-extended)
//   3 WR_X      x[addr] = data[7:0]               4 WR_REG    register addr = data (map below)
//   5 GEN       z words for the range, from seed 6 FORWARD   first input at addr; data[0]: perturb (delta * z)
//   7 RD_OUT    rdata = output addr (int8)        8 UPDATE    layer addr: theta += delta * z on its range part
//   9 RD_Z      rdata = z word addr
// Registers: 0 n_layers, 1 seed, 2 range start, 3 range end (exclusive);
// layer l at 8 + 8 l + k: k = 0 in_features, 1 out_features, 2 flags
// (bit 0 relu, bit 1 bias), 3 weight base, 4 bias base, 5 multiplier m,
// 6 shift, 7 delta (signed).
module ez_accel #(
    parameter PAW = 11,   // parameter address bits (2^PAW int16 parameters)
    parameter XAW = 12,   // batch address bits (2^XAW int8 inputs)
    parameter AAW = 7,    // activation address bits (widest layer 2^AAW)
    parameter LAW = 2     // layer index bits (2^LAW layers)
) (
    input  wire        clk,
    input  wire        rst,
    input  wire        cmd_valid,
    input  wire [3:0]  cmd_op,
    input  wire [15:0] cmd_addr,
    input  wire [31:0] cmd_data,
    output wire        busy,
    output reg  [31:0] rdata
);
    localparam NL = 1 << LAW;
    localparam [31:0] TAG = 32'h9E3779B9;
    localparam [3:0] OP_WR_PARAM = 4'd1, OP_RD_PARAM = 4'd2, OP_WR_X = 4'd3, OP_WR_REG = 4'd4, OP_GEN = 4'd5,
                     OP_FORWARD = 4'd6, OP_RD_OUT = 4'd7, OP_UPDATE = 4'd8, OP_RD_Z = 4'd9;
    localparam [3:0] S_IDLE = 4'd0, S_READ = 4'd1, S_GEN_WAIT = 4'd4,
                     S_LAYER = 4'd5, S_NEURON = 4'd6, S_MAC = 4'd7, S_REQ = 4'd8, S_REQ_WAIT = 4'd9,
                     S_UPD = 4'd10, S_UPD_RUN = 4'd11, S_UPD_END = 4'd12;

    // ------------------------------------------------------------ storage
    reg [15:0] theta [0:(1 << PAW) - 1];
    reg [31:0] zmem  [0:(1 << (PAW - 5)) - 1];
    reg [7:0]  xmem  [0:(1 << XAW) - 1];
    reg [7:0]  act0  [0:(1 << AAW) - 1];
    reg [7:0]  act1  [0:(1 << AAW) - 1];

    // ------------------------------------------------------------ registers
    reg [LAW:0]  n_layers;
    reg [31:0]   seed;
    reg [PAW:0]  r_lo, r_hi;
    reg [15:0]   l_in    [0:NL - 1];
    reg [15:0]   l_out   [0:NL - 1];
    reg [1:0]    l_flags [0:NL - 1];
    reg [PAW:0]  l_wbase [0:NL - 1];
    reg [PAW:0]  l_bbase [0:NL - 1];
    reg [31:0]   l_m     [0:NL - 1];
    reg [7:0]    l_shift [0:NL - 1];
    reg [31:0]   l_delta [0:NL - 1];

    reg [3:0]    state;
    reg [3:0]    rdata_op;

    // ------------------------------------------------------------ sequencing registers
    reg [LAW-1:0] l;              // current layer
    reg [15:0]    o, i;           // output neuron, input element
    reg [PAW:0]   wp, bp;         // weight / bias pointers
    reg [XAW-1:0] xbase;          // first input of the sample
    reg           perturb;        // forward: apply delta * z inside the range
    reg           issuing;
    reg [PAW-5:0] gj, gj_end;     // GEN: word counter
    reg [1:0]     gstep;          // GEN: H(seed ^ TAG), H(.), H(j), H(. ^ key)
    reg [31:0]    key;
    reg [PAW:0]   up, up_end;     // UPDATE: parameter pointer and end
    reg           uv1;            // UPDATE: a read in s1 (its address ua1)
    reg [PAW-1:0] ua1;

    reg  [PAW:0]  l_end;          // UPDATE: end of the layer's parameters (one cycle before the range)
    wire [PAW:0]  u_lo     = (l_wbase[l] > r_lo) ? l_wbase[l] : r_lo;
    wire [PAW:0]  u_hi     = (l_end < r_hi) ? l_end : r_hi;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [PAW+1:0] r_hi31  = {1'b0, r_hi} + 31;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [PAW:0]  issue_p  = (i < l_in[l]) ? wp : bp;
    wire          issue_in = perturb && issue_p >= r_lo && issue_p < r_hi;

    // ------------------------------------------------------------ memories (synchronous read: data one cycle later)
    wire [PAW-1:0] th_ra = (state == S_UPD_RUN) ? up[PAW-1:0] : (state == S_MAC) ? issue_p[PAW-1:0]
                                                                                  : cmd_addr[PAW-1:0];
    wire [PAW-6:0] z_ra  = (state == S_UPD_RUN) ? up[PAW-1:5] : (state == S_MAC) ? issue_p[PAW-1:5]
                                                                                  : cmd_addr[PAW-6:0];
    wire [XAW-1:0] x_ra  = xbase + i[XAW-1:0];
    wire [AAW-1:0] a_ra  = (state == S_MAC) ? i[AAW-1:0] : cmd_addr[AAW-1:0];
    reg [15:0] th_q;  reg th_we; reg [PAW-1:0] th_waddr; reg [15:0] th_wdata;
    reg [31:0] z_q;   reg z_we;  reg [PAW-6:0] z_waddr;  reg [31:0] z_wdata;
    reg [7:0]  x_q;
    reg [7:0]  a0_q, a1_q; reg a_we; reg [AAW-1:0] a_waddr; reg [7:0] a_wdata; reg a_wsel;
    wire       x_we = cmd_valid && !busy && cmd_op == OP_WR_X;

    wire       th_wcmd = cmd_valid && !busy && cmd_op == OP_WR_PARAM;
    // a command is taken only when the writes of the last one have landed
    assign busy = (state != S_IDLE) || th_we || z_we || a_we;

    always @(posedge clk) begin
        th_q <= theta[th_ra];
        if (th_we || th_wcmd) theta[th_we ? th_waddr : cmd_addr[PAW-1:0]] <= th_we ? th_wdata : cmd_data[15:0];
    end
    always @(posedge clk) begin
        z_q <= zmem[z_ra];
        if (z_we) zmem[z_waddr] <= z_wdata;
    end
    always @(posedge clk) begin
        x_q <= xmem[x_ra];
        if (x_we) xmem[cmd_addr[XAW-1:0]] <= cmd_data[7:0];
    end
    always @(posedge clk) begin
        a0_q <= act0[a_ra];
        if (a_we && !a_wsel) act0[a_waddr] <= a_wdata;
    end
    always @(posedge clk) begin
        a1_q <= act1[a_ra];
        if (a_we && a_wsel) act1[a_waddr] <= a_wdata;
    end

    // ------------------------------------------------------------ hash and requantizer
    reg         h_start;
    reg  [31:0] h_x;
    wire        h_busy;
    wire [31:0] h_y;
    ez_hash hash (.clk(clk), .rst(rst), .start(h_start), .x(h_x), .busy(h_busy), .y(h_y));

    reg  signed [31:0] acc;
    reg               q_start;
    wire              q_busy;
    wire signed [7:0] q_y;
    ez_requant requant (.clk(clk), .rst(rst), .start(q_start), .acc(acc), .m(l_m[l]), .shift(l_shift[l]),
                        .relu(l_flags[l][0]), .busy(q_busy), .y(q_y));

    // ------------------------------------------------------------ the MAC pipeline
    // issue (addresses) -> s1: memory outputs -> s2: theta, z bit, input -> s3: t = sat16(theta +- delta)
    // -> s4: w_q or b_q -> s5: term = w_q x_q or b_q -> accumulator. UPDATE shares s1 and s2 and writes
    // theta back from s2.
    reg                pip_v1, pip_b1, pip_in1;    // s1: valid, bias element, in range
    reg  [4:0]         pip_bit1;
    reg                s2_v, s2_b, s2_in, s2_neg;  // s2: z = -1 where s2_neg
    reg  [15:0]        s2_th;
    reg  signed [7:0]  s2_x;
    reg                s3_v, s3_b;
    reg  signed [15:0] s3_t;
    reg  signed [7:0]  s3_x;
    reg                s4_v, s4_b;
    reg  signed [7:0]  s4_w, s4_x;
    reg  signed [12:0] s4_bq;
    reg                s5_v;
    reg  signed [31:0] term;
    reg  signed [32:0] d_pos, d_neg;              // +-delta of the current layer, latched per layer
    wire signed [32:0] t_sum = $signed({{17{s2_th[15]}}, s2_th}) + (s2_neg ? d_neg : d_pos);
    wire               t_ovf = (t_sum[32:15] != {18{t_sum[32]}});
    wire signed [15:0] t_sat = t_ovf ? (t_sum[32] ? 16'sh8000 : 16'sh7FFF) : t_sum[15:0];
    wire signed [7:0]  w_fl  = s3_t[15:8];                           // floor(t / 2^8)
    wire               w_up  = s3_t[7] & ((|s3_t[6:0]) | s3_t[8]);  // round half to even
    // round, then clamp to [-127, 127]: floor -128 gives -127 either way, floor 127 stays 127
    wire signed [7:0]  w_q   = (w_fl == -8'sd128) ? -8'sd127
                             : (w_fl == 8'sd127) ? 8'sd127 : w_fl + $signed({7'd0, w_up});
    wire signed [11:0] b_fl  = s3_t[15:4];                           // floor(t / 2^4)
    wire               b_up  = s3_t[3] & ((|s3_t[2:0]) | s3_t[4]);
    wire signed [12:0] b_q   = $signed({b_fl[11], b_fl}) + $signed({12'd0, b_up});
    wire signed [7:0]  x_in  = (l == 0) ? $signed(x_q) : (l[0] ? $signed(a0_q) : $signed(a1_q));
    wire               in_flight = pip_v1 | s2_v | s3_v | s4_v | s5_v;
    reg                uv2;
    reg  [PAW-1:0]     ua2;

    always @(posedge clk) begin
        if (rst) begin
            state <= S_IDLE;
            n_layers <= 0;
            rdata <= 32'd0;
            th_we <= 1'b0; z_we <= 1'b0; a_we <= 1'b0;
            h_start <= 1'b0; q_start <= 1'b0;
            pip_v1 <= 1'b0; s2_v <= 1'b0; s3_v <= 1'b0; s4_v <= 1'b0; s5_v <= 1'b0; uv1 <= 1'b0; uv2 <= 1'b0;
            issuing <= 1'b0;
            xbase <= 0; i <= 0;
        end else begin
            th_we <= 1'b0; z_we <= 1'b0; a_we <= 1'b0; h_start <= 1'b0; q_start <= 1'b0;
            pip_v1 <= 1'b0;
            s2_v <= pip_v1; s2_b <= pip_b1; s2_in <= pip_in1; s2_neg <= z_q[pip_bit1]; s2_th <= th_q; s2_x <= x_in;
            s3_v <= s2_v; s3_b <= s2_b; s3_t <= s2_in ? t_sat : $signed(s2_th); s3_x <= s2_x;
            s4_v <= s3_v; s4_b <= s3_b; s4_w <= w_q; s4_bq <= b_q; s4_x <= s3_x;
            s5_v <= s4_v;
            term <= s4_b ? $signed({{19{s4_bq[12]}}, s4_bq}) : s4_w * s4_x;
            if (s5_v) acc <= acc + term;
            uv2 <= uv1; ua2 <= ua1;
            case (state)
            S_IDLE: if (cmd_valid && !busy) begin
                rdata_op <= cmd_op;
                case (cmd_op)
                OP_RD_PARAM, OP_RD_Z, OP_RD_OUT: state <= S_READ;
                OP_WR_REG: write_reg(cmd_addr, cmd_data);
                OP_GEN: if (r_hi > r_lo) begin
                    gj <= r_lo[PAW:5];
                    gj_end <= r_hi31[PAW:5];
                    h_x <= seed ^ TAG; h_start <= 1'b1; gstep <= 2'd0;
                    state <= S_GEN_WAIT;
                end
                OP_FORWARD: begin
                    xbase <= cmd_addr[XAW-1:0]; perturb <= cmd_data[0]; l <= 0;
                    state <= S_LAYER;
                end
                OP_UPDATE: begin l <= cmd_addr[LAW-1:0]; state <= S_UPD_END; end
                default: ;
                endcase
            end
            S_READ: begin
                if (rdata_op == OP_RD_PARAM) rdata <= {{16{th_q[15]}}, th_q};
                else if (rdata_op == OP_RD_Z) rdata <= z_q;
                else rdata <= (n_layers[0] ? {{24{a0_q[7]}}, a0_q} : {{24{a1_q[7]}}, a1_q});
                state <= S_IDLE;
            end
            // ---------------- GEN: key = H(H(seed ^ TAG)); zmem[j] = H(H(j) ^ key)
            S_GEN_WAIT: if (!h_busy && !h_start) begin
                case (gstep)
                2'd0: begin h_x <= h_y; h_start <= 1'b1; gstep <= 2'd1; end
                2'd1: begin key <= h_y; h_x <= {{(36-PAW){1'b0}}, gj}; h_start <= 1'b1; gstep <= 2'd2; end
                2'd2: begin h_x <= h_y ^ key; h_start <= 1'b1; gstep <= 2'd3; end
                default: begin
                    z_we <= 1'b1; z_waddr <= gj[PAW-6:0]; z_wdata <= h_y;
                    if (gj + 1'b1 == gj_end) state <= S_IDLE;
                    else begin
                        gj <= gj + 1'b1; h_x <= {{(36-PAW){1'b0}}, gj + 1'b1}; h_start <= 1'b1; gstep <= 2'd2;
                    end
                end
                endcase
            end
            // ---------------- FORWARD: per layer, per output neuron: MAC pipeline, then requantize
            S_LAYER: begin
                o <= 0; wp <= l_wbase[l]; bp <= l_bbase[l];
                d_pos <= $signed({l_delta[l][31], l_delta[l]}); d_neg <= -$signed({l_delta[l][31], l_delta[l]});
                state <= S_NEURON;
            end
            S_NEURON: begin
                i <= 0; acc <= 32'sd0; issuing <= 1'b1;
                state <= S_MAC;
            end
            S_MAC: begin
                if (issuing) begin
                    pip_v1 <= 1'b1;
                    pip_b1 <= (i >= l_in[l]);
                    pip_in1 <= issue_in;
                    pip_bit1 <= issue_p[4:0];
                    if (i < l_in[l]) begin
                        wp <= wp + 1'b1; i <= i + 1'b1;
                        if (i + 1'b1 == l_in[l] && !l_flags[l][1]) issuing <= 1'b0;
                    end else begin
                        bp <= bp + 1'b1; issuing <= 1'b0;
                    end
                end else if (!in_flight) begin
                    state <= S_REQ;
                end
            end
            S_REQ: begin q_start <= 1'b1; state <= S_REQ_WAIT; end
            S_REQ_WAIT: if (!q_busy && !q_start) begin
                a_we <= 1'b1; a_waddr <= o[AAW-1:0]; a_wdata <= q_y; a_wsel <= l[0];
                if (o + 1'b1 < l_out[l]) begin
                    o <= o + 1'b1; state <= S_NEURON;
                end else if ({1'b0, l} + 1'b1 < n_layers) begin
                    l <= l + 1'b1; state <= S_LAYER;
                end else begin
                    state <= S_IDLE;
                end
            end
            // ---------------- UPDATE: theta[p] = sat16(theta[p] + delta z[p]) on [u_lo, u_hi), one per cycle
            S_UPD_END: begin
                l_end <= l_bbase[l] + (l_flags[l][1] ? l_out[l][PAW:0] : {(PAW+1){1'b0}});
                state <= S_UPD;
            end
            S_UPD: begin
                up <= u_lo; up_end <= u_hi; uv1 <= 1'b0;
                d_pos <= $signed({l_delta[l][31], l_delta[l]}); d_neg <= -$signed({l_delta[l][31], l_delta[l]});
                state <= (u_lo < u_hi) ? S_UPD_RUN : S_IDLE;
            end
            S_UPD_RUN: begin
                uv1 <= 1'b0;
                if (up < up_end) begin
                    pip_bit1 <= up[4:0]; pip_in1 <= 1'b1;
                    uv1 <= 1'b1; ua1 <= up[PAW-1:0]; pip_v1 <= 1'b1; pip_b1 <= 1'b0;
                    up <= up + 1'b1;
                end else if (!uv1 && !uv2 && !s2_v) begin
                    state <= S_IDLE;
                end
                if (s2_v) begin
                    th_we <= 1'b1; th_waddr <= ua2; th_wdata <= t_sat;
                end
            end
            default: state <= S_IDLE;
            endcase
        end
    end

    task write_reg(input [15:0] addr, input [31:0] data);
        /* verilator lint_off UNUSEDSIGNAL */
        reg [15:0] li;
        /* verilator lint_on UNUSEDSIGNAL */
        begin
            li = (addr - 16'd8) >> 3;
            if (addr == 16'd0) n_layers <= data[LAW:0];
            else if (addr == 16'd1) seed <= data;
            else if (addr == 16'd2) r_lo <= data[PAW:0];
            else if (addr == 16'd3) r_hi <= data[PAW:0];
            else if (addr >= 16'd8 && addr < 16'd8 + 8 * NL) begin
                case (addr[2:0])
                3'd0: l_in[li[LAW-1:0]]    <= data[15:0];
                3'd1: l_out[li[LAW-1:0]]   <= data[15:0];
                3'd2: l_flags[li[LAW-1:0]] <= data[1:0];
                3'd3: l_wbase[li[LAW-1:0]] <= data[PAW:0];
                3'd4: l_bbase[li[LAW-1:0]] <= data[PAW:0];
                3'd5: l_m[li[LAW-1:0]]     <= data;
                3'd6: l_shift[li[LAW-1:0]] <= data[7:0];
                default: l_delta[li[LAW-1:0]] <= data;
                endcase
            end
        end
    endtask
endmodule
