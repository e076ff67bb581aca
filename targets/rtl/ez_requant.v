// ez_requant.v - requantize an int32 accumulator to the int8 fixed point
// (the fpga-int8 datapath, edgezo/targets/numerics.py step 5):
//
//   y = clamp(round_half_even(acc * m / 2^shift), -128, 127), then max(y, 0) if relu
//
// acc * m (m < 2^32 unsigned, |acc| < 2^31: |product| < 2^63) is formed by
// serial shift-add, one bit of m per cycle, stopping when the remaining bits
// of m are zero (31 cycles for m in [2^30, 2^31)). shift = 0 leaves the
// product unshifted; shift >= 63 gives 0 (as rounding_right_shift does).
// Round half to even: with t = p >>> (shift-1), the round bit is t[0], the
// quotient floor(p / 2^shift) is t >>> 1, and the sticky bit ORs the bits of
// p below shift-1 (two more cycles: shift and sticky, then round and clamp).
module ez_requant (
    input  wire               clk,
    input  wire               rst,
    input  wire               start,
    input  wire signed [31:0] acc,
    input  wire        [31:0] m,
    input  wire        [7:0]  shift,
    input  wire               relu,
    output wire               busy,
    output reg  signed [7:0]  y
);
    localparam [1:0] IDLE = 2'd0, MUL = 2'd1, SHIFT = 2'd2, ROUND = 2'd3;
    reg        [1:0]  state;
    reg signed [63:0] a;
    reg        [31:0] b;
    reg signed [63:0] p;
    reg        [63:0] below;    // bits of p under the round bit
    reg        [5:0]  shm1;     // shift - 1 (shift in 1 .. 63)
    reg               no_shift, to_zero, rl;
    reg signed [63:0] t;
    reg               sticky;

    assign busy = (state != IDLE);

    // clamp(q + up) without a 64-bit add: q outside [-128, 127] saturates, q = 127 stays 127
    wire signed [63:0] q    = no_shift ? p : to_zero ? 64'sd0 : t >>> 1;
    wire               up   = !no_shift && !to_zero && t[0] && (sticky || q[0]);
    wire               out8 = (q[63:7] != {57{q[63]}});
    wire signed [7:0]  sat  = out8 ? (q[63] ? -8'sd128 : 8'sd127)
                                   : (q[7:0] == 8'd127) ? 8'sd127 : q[7:0] + {7'd0, up};

    always @(posedge clk) begin
        if (rst) begin
            state <= IDLE;
            y <= 8'sd0;
        end else begin
            case (state)
            IDLE: if (start) begin
                a <= {{32{acc[31]}}, acc};
                b <= m;
                p <= 64'sd0;
                shm1 <= shift[5:0] - 6'd1;
                no_shift <= (shift == 8'd0);
                to_zero <= (shift >= 8'd63);
                rl <= relu;
                state <= MUL;
            end
            MUL: if (b != 32'd0) begin
                below <= ~({64{1'b1}} << shm1);  // ones under bit shift - 1 (the product takes >= 1 cycle more)
                if (b[0])
                    p <= p + a;
                a <= a <<< 1;
                b <= b >> 1;
            end else begin
                below <= ~({64{1'b1}} << shm1);
                state <= SHIFT;
            end
            SHIFT: begin
                t <= p >>> shm1;
                sticky <= |(p & below);
                state <= ROUND;
            end
            default: begin
                y <= (rl && sat[7]) ? 8'sd0 : sat;
                state <= IDLE;
            end
            endcase
        end
    end
endmodule
